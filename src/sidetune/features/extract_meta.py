"""``extract_meta.json``: the settings an output directory's features were made with.

Computed from the options and the backbones' static description (no weights are read), so a
rerun can check it — and find nothing to do — before any multi-GB checkpoint is loaded. A run
whose settings differ from those recorded is refused (features of two settings never mix).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sidetune.backbones import describe_backbone, describe_text_backbone
from sidetune.backbones.base import TextBackbone, VideoBackbone, resolve_layers
from sidetune.errors import SidetuneError


class MetaMismatchError(SidetuneError, ValueError):
    """The output directory holds features made with other settings."""


def text_format(add_sep: bool) -> str:
    return "[CLS] X [SEP]" if add_sep else "[CLS] X"


def video_meta(
    backbone: VideoBackbone | str,
    *,
    layers: Sequence[int] | None,
    pool: str,
    clip_length: float,
    frames_per_clip: int | None,
    transform: str | None,
    gelu: str | None,
    bf16: bool = False,
) -> dict[str, Any]:
    """Metadata of the video side, from a built backbone or (without loading) its name."""
    if isinstance(backbone, str):
        spec = describe_backbone(backbone)
        name, depth, dim = backbone, spec["depth"], spec["dims"][pool]
        fpc = frames_per_clip or spec["frames_per_clip"]
        kind = transform or spec["transform"]
    else:
        name, depth, dim = backbone.name, backbone.depth, backbone.feature_dim(pool)  # type: ignore[arg-type]
        fpc = frames_per_clip or backbone.frames_per_clip
        kind = transform or backbone.transform.kind
        bf16 = next(backbone.parameters()).dtype == torch.bfloat16
        cfg = getattr(backbone, "cfg", None)
        if gelu is None and cfg is not None and hasattr(cfg, "gelu_approximate"):
            gelu = "erf" if cfg.gelu_approximate == "none" else "tanh"
    meta: dict[str, Any] = {
        "backbone": name,
        "layers": resolve_layers(layers, depth),
        "pool": pool,
        "video_dim": dim,
        "clip_length": clip_length,
        "frames_per_clip": fpc,
        "transform": kind,
        "weights": "bf16" if bf16 else "fp32",
    }
    if name.startswith("internvideo2"):
        meta["gelu"] = gelu or "erf"
    return meta


def text_meta(
    text: TextBackbone | str,
    *,
    layers: Sequence[int] | None,
    project: bool,
    add_sep: bool,
    pre_text: bool,
) -> dict[str, Any]:
    """Metadata of the text side, from a built text tower or a (video or text) backbone name."""
    if isinstance(text, str):
        spec = describe_text_backbone(text)
        name, depth = spec["name"], spec["depth"]
        dim = spec["dims"]["projected" if project else "hidden"]
    else:
        name, depth, dim = text.name, text.depth, text.feature_dim(project)
    meta: dict[str, Any] = {
        "text_backbone": name,
        "text_layers": resolve_layers(layers, depth),
        "text_dim": dim,
    }
    if name.startswith("internvideo2"):
        meta["text_format"] = text_format(add_sep)
        meta["pre_text"] = pre_text
    return meta


def read_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return old if isinstance(old, dict) else {}


# What directories written before these keys existed were made with (crop transform, text
# with [SEP]): resuming one with today's defaults would mix two preprocessings.
LEGACY_DEFAULTS: dict[str, Any] = {
    "transform": "crop",
    "gelu": "erf",
    "weights": "fp32",
    "text_format": text_format(add_sep=True),
    "pre_text": False,
}


_LEGACY_SIDE = {
    "transform": "backbone",
    "gelu": "backbone",
    "weights": "backbone",
    "text_format": "text_backbone",
    "pre_text": "text_backbone",
}


def with_legacy_defaults(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with each key an older version did not record set to what that version did
    (:data:`LEGACY_DEFAULTS`), when the side it belongs to was recorded at all."""
    gelu_applies = str(meta.get("backbone", "")).startswith("internvideo2")
    legacy = {
        k: v
        for k, v in LEGACY_DEFAULTS.items()
        if k not in meta and _LEGACY_SIDE[k] in meta and (k != "gelu" or gelu_applies)
    }
    return {**legacy, **meta}


def check_meta(path: Path, meta: dict[str, Any], old: dict[str, Any]) -> None:
    """Raise :class:`MetaMismatchError` when a recorded setting differs from ``meta``.

    A key an older version did not record is compared with what that version did
    (:func:`with_legacy_defaults`).
    """
    old = with_legacy_defaults(old)
    diff = {k: (old[k], v) for k, v in meta.items() if k in old and old[k] != v}
    if diff:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise MetaMismatchError(
            f"{path}: this output directory holds features made with other settings ({detail}); "
            "use another --out or pass --overwrite"
        )
