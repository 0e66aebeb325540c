"""The one intermediates API every frozen backbone offers (timm style).

Video backbones (:class:`VideoBackbone`) map a batch of clips to K pooled intermediate layers::

    feats = backbone.forward_intermediates(clips, layers=[-4, -3, -2, -1], pool="adaptive")
    # clips: (B, N, 3, H, W) float, already transformed by ``backbone.transform``
    # feats: (K, B, F) — stack the B clips of a video along T to get [K, T, F]

Text backbones (:class:`TextBackbone`) map tokenised queries to K intermediate token layers::

    batch = text.tokenize(["a man cooks", "a dog runs"])
    hidden, mask = text.forward_intermediates(batch["input_ids"], batch["attention_mask"], layers)
    # hidden: (K, B, L, F); mask: (B, L) bool, True = real token

Layer indexing (the same for every backbone, and the same as the paper's "layers 37-40 of 40"):
``0`` is the embedding output (patch / token embeddings + positions, before block 1),
``l`` in ``1..depth`` is the output of block ``l`` (1-based), and negative numbers count from
the end (``-1`` is the last block). This is also the index into Hugging Face ``hidden_states``.

Pooling of a layer's token sequence ``(B, L_v, F)`` into one vector per clip:

* ``"adaptive"`` — re-use the frozen final pooling head on every chosen layer (SDST Eq. 15:
  InternVideo2's attention pool ``clip_projector``; CLIP's post-LayerNorm + projection of CLS);
* ``"cls"`` — the CLS token as is;
* ``"mean"`` — the mean of the patch tokens (CLS excluded).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from sidetune.errors import SidetuneError
from sidetune.video.transforms import VideoTransform

Pool = Literal["adaptive", "cls", "mean"]
POOLS: tuple[str, ...] = ("adaptive", "cls", "mean")


class BackboneError(SidetuneError, ValueError):
    """Bad backbone name, layer choice, pooling mode or input shape."""


def resolve_layers(layers: Sequence[int] | None, depth: int, default_last: int = 4) -> list[int]:
    """Turn a user layer choice into 1-based block numbers in ``0..depth`` (order kept).

    ``None`` means the last ``default_last`` blocks. Negative numbers count from the end like
    Python indices into ``hidden_states`` (``-1 == depth``, ``-(depth + 1) == 0``). Duplicates
    and out-of-range numbers are errors.
    """
    if layers is None:
        return list(range(depth - min(default_last, depth) + 1, depth + 1))
    out: list[int] = []
    for raw in layers:
        layer = int(raw)
        resolved = depth + 1 + layer if layer < 0 else layer
        if not 0 <= resolved <= depth:
            raise BackboneError(
                f"layer {raw} out of range for a {depth}-block backbone "
                f"(use 0..{depth}, 0 = embeddings, or -1..-{depth + 1} counting from the last)"
            )
        if resolved in out:
            raise BackboneError(f"layer {raw} chosen twice (layers: {list(layers)})")
        out.append(resolved)
    if not out:
        raise BackboneError("no layers chosen")
    return out


def parse_layers(spec: str | Sequence[int] | None) -> list[int] | None:
    """CLI form of a layer choice: ``"37,38,39,40"``, ``"-4,-3,-2,-1"``, ``"last4"`` or ``None``.

    ``"lastK"`` becomes ``[-K, ..., -1]``. Returns ``None`` for ``None`` / ``""`` (the default).
    """
    if spec is None:
        return None
    if not isinstance(spec, str):
        return [int(x) for x in spec]
    text = spec.strip().replace(" ", "")
    if not text:
        return None
    if text.startswith("last"):
        try:
            k = int(text[4:])
        except ValueError as exc:
            raise BackboneError(f"bad layer choice {spec!r}: expected e.g. 'last4'") from exc
        if k < 1:
            raise BackboneError(f"bad layer choice {spec!r}: K must be >= 1")
        return list(range(-k, 0))
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError as exc:
        raise BackboneError(
            f"bad layer choice {spec!r}: expected comma-separated integers like '37,38,39,40' "
            "or '-4,-3,-2,-1' or 'last4'"
        ) from exc


def check_pool(pool: str) -> Pool:
    if pool not in POOLS:
        raise BackboneError(f"unknown pooling {pool!r} (choose from {', '.join(POOLS)})")
    return pool  # type: ignore[return-value]


class VideoBackbone(nn.Module, ABC):
    """A frozen video (or image) encoder with the intermediates API.

    Attributes: ``name`` (registry name), ``depth`` (number of blocks), ``width`` (token width),
    ``transform`` (uint8 frames -> model input), ``frames_per_clip`` (default N).
    """

    name: str = ""
    depth: int = 0
    width: int = 0
    frames_per_clip: int = 1
    transform: VideoTransform

    @abstractmethod
    def feature_dim(self, pool: Pool) -> int:
        """Size F of the pooled feature for pooling mode ``pool``."""

    @abstractmethod
    def forward_intermediates(
        self, clips: torch.Tensor, layers: Sequence[int] | None = None, pool: Pool = "adaptive"
    ) -> torch.Tensor:
        """clips ``(B, N, 3, H, W)`` -> pooled layers ``(K, B, F)`` (K = len(layers))."""

    def resolve_layers(self, layers: Sequence[int] | None) -> list[int]:
        return resolve_layers(layers, self.depth)


class TextBackbone(nn.Module, ABC):
    """A frozen text encoder with the intermediates API.

    Attributes: ``name``, ``depth`` (blocks used), ``width`` (hidden size).
    """

    name: str = ""
    depth: int = 0
    width: int = 0
    max_length: int = 0
    tokenizer: Any = None  # a transformers tokenizer, loaded from a local directory
    tokenizer_hint: str = ""  # how to provide a tokenizer, for the error message

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """``{"input_ids": (B, L) long, "attention_mask": (B, L) long}``, padded to the longest."""
        if self.tokenizer is None:
            raise BackboneError(f"{self.name}: no tokenizer ({self.tokenizer_hint})")
        enc = self.tokenizer(
            list(texts),
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    @abstractmethod
    def feature_dim(self, project: bool = False) -> int:
        """Size F of the token features (``project``: after the re-used final projection)."""

    @abstractmethod
    def forward_intermediates(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        layers: Sequence[int] | None = None,
        project: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> ``(hidden (K, B, L, F), mask (B, L) bool)``; mask is True on real tokens."""

    def resolve_layers(self, layers: Sequence[int] | None) -> list[int]:
        return resolve_layers(layers, self.depth)


def check_clips(clips: torch.Tensor, name: str) -> None:
    if clips.ndim != 5 or clips.shape[2] != 3:
        raise BackboneError(f"{name}: clips must be (B, N, 3, H, W), got {tuple(clips.shape)}")
