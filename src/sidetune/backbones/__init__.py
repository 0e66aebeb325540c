"""Frozen backbones with one intermediates API, created by name (timm style).

>>> backbone = create_backbone("internvideo2-1b", checkpoint="InternVideo2-stage2_1b-224p-f4.pt")
>>> feats = backbone.forward_intermediates(clips, layers=[37, 38, 39, 40], pool="adaptive")  # (K, B, 768)
>>> text = create_text_backbone("internvideo2-1b", checkpoint=..., tokenizer="bert-large-uncased/")

Without ``checkpoint`` the weights are random (tests, speed benchmarks, the demo) and drawn from
a seed derived from the variant name (or ``seed=``), so two extractions give identical features
and a run's tiny backbone can be rebuilt exactly at ``sidetune ground`` time. The tiny text
towers ship a small vocabulary (``backbones/vocab/vocab.txt``) used when no tokenizer is
given. Every backbone is returned frozen (``sidetune.utils.params.freeze``: no gradients, eval mode).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from sidetune.backbones.base import (
    POOLS,
    BackboneError,
    Pool,
    TextBackbone,
    VideoBackbone,
    parse_layers,
    resolve_layers,
)
from sidetune.backbones.checkpoint import CheckpointError, LoadReport
from sidetune.nn.linear import use_fast_linears
from sidetune.utils.params import freeze

PathLike = str | os.PathLike[str]
T = TypeVar("T")

TINY_VOCAB = Path(__file__).with_name("vocab")  # holds vocab.txt (BERT WordPiece format)


def variant_seed(name: str) -> int:
    """The seed of a variant's random weights: a stable hash of its name."""
    return zlib.crc32(name.encode("utf-8"))


def _seeded(seed: int, build: Callable[[], T]) -> T:
    """Run ``build`` under ``torch.manual_seed(seed)`` without touching the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _internvideo2(config_fn: Callable[..., Any], name: str) -> Callable[..., VideoBackbone]:
    def build(
        checkpoint: PathLike | None = None,
        frames_per_clip: int | None = None,
        strict: bool = True,
        dtype: torch.dtype | None = None,
        gelu: str | None = None,
        transform: str = "eval",
        **kw: Any,
    ) -> VideoBackbone:
        from sidetune.backbones.internvideo2 import InternVideo2Backbone

        if frames_per_clip is not None:
            kw["num_frames"] = frames_per_clip  # checkpoint pos_embed is interpolated on load
        if gelu is not None:
            kw["gelu_approximate"] = gelu_approximate(gelu)
        try:
            cfg = config_fn(**kw)
        except TypeError as exc:
            raise BackboneError(f"{name}: bad option ({exc})") from exc
        if checkpoint is not None and strict:
            # Every weight will be overwritten: skip the random init (1B/6B init is slow and
            # would briefly hold an fp32 copy).
            with torch.device("meta"):
                model = InternVideo2Backbone(cfg, name=name, transform=transform)
            model = model.to(dtype or torch.float32).to_empty(device="cpu")
        else:
            model = InternVideo2Backbone(cfg, name=name, transform=transform)
            if dtype is not None:
                model = model.to(dtype)
        if checkpoint is not None:
            model.load(str(checkpoint), strict=strict)
        return model

    return build


def _clip(name: str) -> Callable[..., VideoBackbone]:
    def build(
        checkpoint: PathLike | None = None,
        frames_per_clip: int | None = None,
        strict: bool = True,
        dtype: torch.dtype | None = None,
        transform: str | None = None,
        **kw: Any,
    ) -> VideoBackbone:
        from sidetune.backbones.clip import CLIPVideo, load_clip_model

        if kw:
            raise BackboneError(f"{name}: unknown options {sorted(kw)}")
        model, report = load_clip_model(name, checkpoint, strict=strict)
        backbone = CLIPVideo(model, name=name, frames_per_clip=frames_per_clip or 1)
        if transform is not None:  # CLIP's own preprocessing is "crop"
            backbone.transform = backbone.transform.preset(transform)
        backbone.load_report = report
        return backbone.to(dtype) if dtype is not None else backbone

    return build


GELU_CHOICES: tuple[str, ...] = ("erf", "tanh")


def gelu_approximate(gelu: str) -> str:
    """``"erf"`` -> ``"none"`` (exact GELU), ``"tanh"`` -> ``"tanh"`` (``nn.GELU`` spelling)."""
    if gelu not in GELU_CHOICES:
        raise BackboneError(f"unknown GELU {gelu!r} (choose from {', '.join(GELU_CHOICES)})")
    return "none" if gelu == "erf" else "tanh"


def _registry() -> dict[str, Callable[..., VideoBackbone]]:
    from sidetune.backbones.internvideo2 import (
        internvideo2_1b_config,
        internvideo2_6b_config,
        internvideo2_tiny_config,
    )

    return {
        "internvideo2-1b": _internvideo2(internvideo2_1b_config, "internvideo2-1b"),
        "internvideo2-6b": _internvideo2(internvideo2_6b_config, "internvideo2-6b"),
        "internvideo2-tiny": _internvideo2(internvideo2_tiny_config, "internvideo2-tiny"),
        "clip-vit-b32": _clip("clip-vit-b32"),
        "clip-vit-b16": _clip("clip-vit-b16"),
        "clip-vit-l14": _clip("clip-vit-l14"),
        "clip-tiny": _clip("clip-tiny"),
    }


BACKBONE_NAMES: tuple[str, ...] = (
    "internvideo2-1b",
    "internvideo2-6b",
    "internvideo2-tiny",
    "clip-vit-b32",
    "clip-vit-b16",
    "clip-vit-l14",
    "clip-tiny",
)
TEXT_BACKBONE_NAMES: tuple[str, ...] = ("internvideo2-text", "internvideo2-text-tiny")


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone` (and by :func:`create_text_backbone`)."""
    return list(BACKBONE_NAMES)


def create_backbone(
    name: str, checkpoint: PathLike | None = None, seed: int | None = None, **kw: Any
) -> VideoBackbone:
    """Build video backbone ``name``, load ``checkpoint`` (a local path) if given, and freeze it.

    Without a checkpoint the random weights come from ``seed`` (default: from the name).

    Options: ``frames_per_clip`` (InternVideo2: frames per clip input, default 4; CLIP: frames
    averaged per clip, default 1), ``strict`` (missing / unexpected keys are errors),
    ``dtype``, ``transform`` (``"eval"`` | ``"demo"`` | ``"crop"``; InternVideo2 default
    ``"eval"``, CLIP ``"crop"``). InternVideo2 also: ``gelu`` (``"erf"`` default, ``"tanh"``
    as the official fused MLP), ``checkpoint_frames`` (frames of the checkpoint's
    ``pos_embed``, default 4) and other config overrides.
    """
    registry = _registry()
    if name not in registry:
        raise BackboneError(f"unknown backbone {name!r} (choose from {', '.join(BACKBONE_NAMES)})")
    build = registry[name]
    if checkpoint is None:
        model = _seeded(variant_seed(name) if seed is None else seed, lambda: build(**kw))
    else:
        model = build(checkpoint=checkpoint, **kw)
    freeze(model)
    use_fast_linears(model)  # CPU float32: matmuls on oneDNN (sidetune/nn/linear.py)
    return model


def describe_backbone(name: str) -> dict[str, Any]:
    """What a video backbone produces, without building it (for metadata and resume checks).

    ``{"depth", "frames_per_clip", "transform", "dims": {pool: F}}`` from the named variant's
    architecture (a checkpoint of another size fails to load anyway).
    """
    if name.startswith("internvideo2-"):
        from sidetune.backbones.internvideo2 import (
            internvideo2_1b_config,
            internvideo2_6b_config,
            internvideo2_tiny_config,
        )

        fns = {"1b": internvideo2_1b_config, "6b": internvideo2_6b_config}
        cfg = fns.get(name.removeprefix("internvideo2-"), internvideo2_tiny_config)()
        dims = {"adaptive": cfg.clip_embed_dim, "cls": cfg.embed_dim, "mean": cfg.embed_dim}
        return {
            "depth": cfg.depth,
            "frames_per_clip": cfg.num_frames,
            "transform": "eval",
            "dims": dims,
        }
    if name in BACKBONE_NAMES:
        from sidetune.backbones.clip import CLIP_VARIANTS

        v = CLIP_VARIANTS[name]
        width, layers = v["vision"][:2]
        dims = {"adaptive": v["proj"], "cls": width, "mean": width}
        return {"depth": layers, "frames_per_clip": 1, "transform": "crop", "dims": dims}
    raise BackboneError(f"unknown backbone {name!r} (choose from {', '.join(BACKBONE_NAMES)})")


def describe_text_backbone(name: str) -> dict[str, Any]:
    """``{"name", "depth", "dims": {"hidden": F, "projected": F}}`` of the text tower for ``name``."""
    text_name = text_backbone_for(name)
    if text_name.startswith("clip-"):
        from sidetune.backbones.clip import CLIP_VARIANTS

        width, layers = CLIP_VARIANTS[text_name]["text"][:2]
        dims = {"hidden": width, "projected": CLIP_VARIANTS[text_name]["proj"]}
        return {"name": text_name, "depth": layers, "dims": dims}
    from sidetune.backbones.text import internvideo2_text_config, internvideo2_text_tiny_config

    tcfg = (
        internvideo2_text_tiny_config()
        if text_name.endswith("tiny")
        else internvideo2_text_config()
    )
    dims = {"hidden": tcfg.hidden_size, "projected": tcfg.proj_dim}
    return {"name": text_name, "depth": tcfg.fusion_layer, "dims": dims}


def text_backbone_for(name: str) -> str:
    """The text tower that goes with a video backbone name (CLIP: its own text tower)."""
    if name.startswith("clip-") or name in TEXT_BACKBONE_NAMES:
        return name
    if name == "internvideo2-tiny":
        return "internvideo2-text-tiny"
    if name.startswith("internvideo2"):
        return "internvideo2-text"
    raise BackboneError(f"no text tower known for backbone {name!r}")


def create_text_backbone(
    name: str,
    checkpoint: PathLike | None = None,
    tokenizer: PathLike | Any | None = None,
    strict: bool = True,
    dtype: torch.dtype | None = None,
    add_sep: bool = False,
    normalize_text: bool = False,
    seed: int | None = None,
    **kw: Any,
) -> TextBackbone:
    """Build the text tower for ``name`` (a text name or a video backbone name), frozen.

    ``tokenizer``: a local directory (BERT ``vocab.txt`` / CLIP ``vocab.json`` + ``merges.txt``)
    or a ready tokenizer object; CLIP defaults to the checkpoint directory, the tiny BERT tower
    to the packaged vocabulary. Without a checkpoint the random weights come from ``seed``
    (default: from the name).
    InternVideo2 only: ``add_sep`` (``[CLS] X [SEP]``, the Hugging Face form, instead of the
    official ``[CLS] X``), ``normalize_text`` (the official ``pre_text`` caption normalisation).
    """
    text_name = text_backbone_for(name)

    def build(ckpt: PathLike | None) -> TextBackbone:
        return _create_text(text_name, ckpt, tokenizer, strict, dtype, add_sep, normalize_text, kw)

    if checkpoint is None:
        model = _seeded(variant_seed(text_name) if seed is None else seed, lambda: build(None))
    else:
        model = build(checkpoint)
    use_fast_linears(model)  # CPU float32: matmuls on oneDNN (sidetune/nn/linear.py)
    return model


def _create_text(
    text_name: str,
    checkpoint: PathLike | None,
    tokenizer: PathLike | Any | None,
    strict: bool,
    dtype: torch.dtype | None,
    add_sep: bool,
    normalize_text: bool,
    kw: dict[str, Any],
) -> TextBackbone:
    model: TextBackbone
    if text_name.startswith("clip-"):
        from sidetune.backbones.clip import CLIPText, load_clip_model, load_clip_tokenizer

        if add_sep or normalize_text:
            raise BackboneError(f"{text_name}: add_sep / normalize_text are InternVideo2 options")

        clip_model, report = load_clip_model(text_name, checkpoint, strict=strict)
        tok = tokenizer
        if isinstance(tok, str | os.PathLike):
            tok = load_clip_tokenizer(tok)
        elif tok is None and checkpoint is not None:
            tok = load_clip_tokenizer(checkpoint)
        clip_text = CLIPText(clip_model, name=text_name, tokenizer=tok)
        clip_text.load_report = report
        model = clip_text
    else:
        from sidetune.backbones.text import (
            InternVideo2Text,
            internvideo2_text_config,
            internvideo2_text_tiny_config,
            load_bert_tokenizer,
        )

        cfg = (
            internvideo2_text_tiny_config
            if text_name.endswith("tiny")
            else internvideo2_text_config
        )(**kw)
        if tokenizer is None and text_name.endswith("tiny"):
            tokenizer = TINY_VOCAB  # the small vocabulary shipped with the package
        tok = (
            load_bert_tokenizer(tokenizer, cfg.max_length)
            if isinstance(tokenizer, str | os.PathLike)
            else tokenizer
        )
        iv_text = InternVideo2Text(
            cfg, tokenizer=tok, name=text_name, add_sep=add_sep, normalize_text=normalize_text
        )
        if checkpoint is not None:
            iv_text.load(str(checkpoint), strict=strict)
        model = iv_text
    if dtype is not None:
        model = model.to(dtype)
    freeze(model)
    return model


__all__ = [
    "BACKBONE_NAMES",
    "GELU_CHOICES",
    "POOLS",
    "TINY_VOCAB",
    "BackboneError",
    "CheckpointError",
    "LoadReport",
    "Pool",
    "TextBackbone",
    "VideoBackbone",
    "create_backbone",
    "create_text_backbone",
    "describe_backbone",
    "describe_text_backbone",
    "gelu_approximate",
    "list_backbones",
    "parse_layers",
    "resolve_layers",
    "text_backbone_for",
    "variant_seed",
]
