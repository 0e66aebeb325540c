"""A trained grounding run on disk: its config, its checkpoint, its model.

A run directory (written by ``sidetune train``) holds ``config.yaml`` (the resolved config),
``checkpoints/{last,best}/`` and, when it was trained on features made by ``sidetune
extract``, ``extract_meta.json`` (backbone, layers, pooling, clip length, dims) so that
``sidetune ground`` can rebuild the same extractor for a new video.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from sidetune.config import ConfigError, load_config
from sidetune.engine import (
    BEST,
    LAST,
    CheckpointError,
    checkpoint_dir,
    find_checkpoint,
    load_meta,
    load_weights,
    resolve_device,
)
from sidetune.grounding.config import GroundingConfig
from sidetune.grounding.model import build_sdst

EXTRACT_META = "extract_meta.json"  # the name ``sidetune extract`` gives it, kept in the run


def load_grounding_config(
    config: str | Path | None, overrides: Sequence[str] = ()
) -> GroundingConfig:
    """Schema defaults <- YAML (path or built-in name) <- ``key=value`` overrides."""
    return load_config(GroundingConfig, config, overrides)


def run_config_path(run_dir: str | Path) -> Path:
    """``run_dir/config.yaml``; a clear error when ``run_dir`` is not a grounding run."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: not found; is {run_dir} a grounding run directory?")
    return cfg_path


def resolve_checkpoint(run_dir: str | Path, which: str = "best") -> Path:
    """``best`` (falling back to ``last`` when no validation ran), ``last``, or a directory."""
    run_dir = Path(run_dir)
    candidates = {"best": [BEST, LAST], "last": [LAST]}.get(which)
    if candidates is None:
        found = find_checkpoint(Path(which))
        if found is None:
            raise CheckpointError(
                f"{which}: not a checkpoint directory (needs meta.json + model.safetensors)"
            )
        return found
    for name in candidates:
        found = find_checkpoint(checkpoint_dir(run_dir, name))
        if found is not None:
            return found
    raise CheckpointError(f"{run_dir}: no checkpoint found under {run_dir / 'checkpoints'}")


def load_run(
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    checkpoint: str = "best",
    device: str = "cpu",
) -> tuple[GroundingConfig, nn.Module, Path]:
    """The run's saved config (with ``overrides``) and its model with the checkpoint's weights, in eval mode."""
    cfg = load_grounding_config(run_config_path(run_dir), overrides)
    ckpt = resolve_checkpoint(run_dir, checkpoint)
    model = build_sdst(cfg.model)
    load_weights(model, ckpt)
    model.to(resolve_device(device)).eval()
    return cfg, model, ckpt


def find_extract_meta(video_features: str | Path) -> Path | None:
    """The ``extract_meta.json`` of a feature directory made by ``sidetune extract``.

    ``extract`` writes ``OUT/video_features/`` and ``OUT/extract_meta.json``, so the file sits
    beside (or, for a custom layout, inside) the video feature directory.
    """
    root = Path(video_features)
    for cand in (root / EXTRACT_META, root.parent / EXTRACT_META):
        if cand.is_file():
            return cand
    return None


def read_extract_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable extraction settings ({exc})") from exc
    if not isinstance(meta, dict):
        raise ConfigError(f"{path}: expected a JSON object of extraction settings")
    return meta


def run_extract_meta(run_dir: str | Path) -> dict[str, Any] | None:
    """The extraction settings recorded in a run (``run_dir/extract_meta.json``), if any."""
    path = Path(run_dir) / EXTRACT_META
    return read_extract_meta(path) if path.is_file() else None


def run_summary(run_dir: str | Path) -> dict[str, Any]:
    """Epoch, step and metrics of a run's last checkpoint (for reports)."""
    ckpt = resolve_checkpoint(run_dir, "last")
    meta = load_meta(ckpt)
    return {
        k: meta.get(k) for k in ("epoch", "step", "metrics", "best_metric", "best", "best_epoch")
    }


__all__ = [
    "EXTRACT_META",
    "find_extract_meta",
    "load_grounding_config",
    "load_run",
    "read_extract_meta",
    "resolve_checkpoint",
    "run_config_path",
    "run_extract_meta",
    "run_summary",
]
