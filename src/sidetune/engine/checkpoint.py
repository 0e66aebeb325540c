"""Checkpoints: safetensors weights + JSON sidecar + a tensors-only training-state file.

A checkpoint is a directory::

    model.safetensors   trainable + frozen weights of the (unwrapped) model
    meta.json           config, epoch, step, metrics, best value, RNG states of every rank
    train_state.pt      optimizer / scheduler / grad-scaler state; only tensors and plain
                        containers, loaded with ``torch.load(..., weights_only=True)``

Nothing here unpickles arbitrary objects. A checkpoint directory is published atomically:
it is written complete under a temporary name and then swapped in (``name`` -> ``name.old``,
``tmp`` -> ``name``, ``name.old`` removed), so a crash leaves either the old or the new one;
:func:`find_checkpoint` falls back to ``name.old`` if the crash hit between the two renames.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from sidetune.errors import SidetuneError
from sidetune.utils.io import write_json

WEIGHTS = "model.safetensors"
META = "meta.json"
TRAIN_STATE = "train_state.pt"


class CheckpointError(SidetuneError):
    """A missing, incomplete or mismatching checkpoint; the message names the path."""


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module under DDP / ``torch.compile`` wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def save_checkpoint(
    directory: str | os.PathLike[str],
    model: nn.Module,
    meta: dict[str, Any],
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write weights, ``meta`` (JSON-serialisable) and optional ``train_state``; publish atomically."""
    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        save_model(unwrap(model), str(tmp / WEIGHTS))
        if train_state is not None:
            torch.save(train_state, tmp / TRAIN_STATE)
        write_json(tmp / META, meta)
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def find_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """``directory`` if it holds a complete checkpoint, else its ``.old`` twin, else None."""
    final = Path(directory)
    for cand in (final, final.with_name(final.name + ".old")):
        if (cand / META).is_file() and (cand / WEIGHTS).is_file():
            return cand
    return None


def load_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(directory) / META
    try:
        with open(path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: checkpoint sidecar not found") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return meta


def load_weights(model: nn.Module, directory: str | os.PathLike[str], strict: bool = True) -> None:
    """Load ``model.safetensors`` into the (unwrapped) model, in place."""
    path = Path(directory) / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        load_model(unwrap(model), str(path), strict=strict)
    except RuntimeError as exc:
        msg = str(exc).replace("\n", " ")
        raise CheckpointError(
            f"{path}: weights do not fit the model built from the config: {msg}"
        ) from exc


def load_train_state(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Optimizer / scheduler / scaler state; tensors only (``weights_only=True``)."""
    path = Path(directory) / TRAIN_STATE
    if not path.is_file():
        raise CheckpointError(f"{path}: training state not found (cannot resume from it)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot load training state: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict")
    return state
