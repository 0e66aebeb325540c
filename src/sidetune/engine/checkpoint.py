"""Checkpoints: safetensors weights + JSON sidecar + a tensors-only training-state file.

A checkpoint is a directory::

    model.safetensors   trainable parameters and buffers of the (unwrapped) model; frozen
                        parameters (a side-tuned backbone) are left out: they are rebuilt
                        from the backbone's own checkpoint when the model is built
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
from safetensors.torch import load_file, save_file
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
        save_file(trainable_state(model), str(tmp / WEIGHTS))
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


def _trainable_items(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Trainable parameters and persistent buffers, one name per tensor (the first).

    Shared tensors (e.g. levels with tied weights) appear once; frozen parameters not at all.
    """
    items: list[tuple[str, torch.Tensor]] = []
    seen: set[int] = set()
    for name, t in unwrap(model).state_dict(keep_vars=True).items():
        if id(t) in seen or (isinstance(t, nn.Parameter) and not t.requires_grad):
            continue
        seen.add(id(t))
        items.append((name, t))
    return items


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What ``model.safetensors`` holds, as contiguous CPU copies.

    Copies because safetensors refuses tensors that share storage (views of one buffer).
    """
    return {n: t.detach().to("cpu", copy=True).contiguous() for n, t in _trainable_items(model)}


def load_weights(model: nn.Module, directory: str | os.PathLike[str], strict: bool = True) -> None:
    """Load ``model.safetensors`` into the (unwrapped) model, in place.

    ``strict`` requires every trainable parameter and buffer to be in the file and every
    tensor of the file to exist in the model; frozen parameters may be absent (they come
    from the backbone checkpoint) and are loaded when present (older, full checkpoints).
    """
    path = Path(directory) / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read weights: {exc}") from exc
    target = unwrap(model).state_dict(keep_vars=True)
    unexpected = sorted(set(tensors) - set(target))
    missing = sorted({n for n, _ in _trainable_items(model)} - set(tensors))
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{path}: weights do not fit the model built from the config: "
            f"missing {_preview(missing)}, unexpected {_preview(unexpected)}"
        )
    with torch.no_grad():
        for name, value in tensors.items():
            if name not in target:
                continue
            dest = target[name]
            if dest.shape != value.shape:
                raise CheckpointError(
                    f"{path}: weights do not fit the model built from the config: {name} "
                    f"has shape {tuple(value.shape)} in the checkpoint, {tuple(dest.shape)} in the model"
                )
            dest.copy_(value)


def _preview(names: list[str], n: int = 5) -> str:
    if not names:
        return "none"
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


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
