"""Checkpoints: safetensors weights + JSON sidecar + a tensors-only training-state file.

A checkpoint is a directory::

    model.safetensors   trainable parameters and buffers of the (unwrapped) model; frozen
                        parameters (a side-tuned backbone) are left out: they are rebuilt
                        from the backbone's own checkpoint when the model is built
    meta.json           config, epoch, step, metrics, best value, RNG states of every rank
    train_state.pt      optimizer / scheduler / grad-scaler state; only tensors and plain
                        containers, loaded with ``torch.load(..., weights_only=True)``
    complete.json       written last: size and SHA-256 of every other file (the completion
                        marker; a directory without it was cut short)

Nothing here unpickles arbitrary objects.

Crash safety. A checkpoint is written complete (files fsynced, then the marker) under a hidden
temporary name ``.name.XXXX.tmp`` and then published by two renames: ``name`` -> ``name.old``
(only when ``name`` is complete; a complete ``name.old`` left by an earlier crash is kept until
the new one is in place), ``tmp`` -> ``name``, then ``name.old`` is removed. At every instant
at least one complete checkpoint exists under ``name``, ``name.old`` or a marked temporary
folder, however many times in a row the process is killed. :func:`find_checkpoint` returns the
newest complete candidate (by epoch and step); :func:`recover_checkpoint` (run by the trainer
at start) moves it back to ``name`` and deletes every stale temporary folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
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
COMPLETE = "complete.json"
CRASH_ENV = "SIDETUNE_CRASH_AT"

# Test hook: called with the name of every crash point (e.g. "last:moved-old"); a test makes
# it raise to simulate a kill at exactly that step. See also CRASH_ENV (:func:`crash_point`).
crash_hook: Callable[[str], None] | None = None
_crash_counts: dict[str, int] = {}


class CheckpointError(SidetuneError):
    """A missing, incomplete or mismatching checkpoint; the message names the path."""


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module under DDP / ``torch.compile`` wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def crash_point(name: str) -> None:
    """A named step where tests inject a crash (no effect otherwise).

    ``crash_hook`` (in-process tests) is called with ``name``; ``SIDETUNE_CRASH_AT=name`` or
    ``name@N`` (the N-th time this process passes ``name``) kills the process on the spot with
    ``os._exit(137)``, as ``kill -9`` would: no cleanup, no ``finally``.
    """
    if crash_hook is not None:
        crash_hook(name)
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    target, _, nth = spec.partition("@")
    if target != name:
        return
    _crash_counts[name] = _crash_counts.get(name, 0) + 1
    if _crash_counts[name] == int(nth or 1):
        os._exit(137)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _digest(path: Path, sync: bool = False) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
        if sync:
            os.fsync(fh.fileno())
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


def _write_marker(directory: Path) -> None:
    """fsync every file, then record their sizes and checksums in ``complete.json``."""
    files = {
        p.name: _digest(p, sync=True)
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != COMPLETE and not p.name.startswith(".")
    }
    write_json(directory / COMPLETE, {"format": 1, "files": files})
    _fsync_dir(directory)


def is_complete(directory: str | os.PathLike[str], verify: bool = False) -> bool:
    """Whether ``directory`` holds a whole checkpoint.

    With a ``complete.json`` marker every listed file must exist with its recorded size (and,
    with ``verify``, its SHA-256). A directory without a marker counts only when it is a
    published checkpoint of an older version (``meta.json`` and weights present, not a
    temporary folder).
    """
    d = Path(directory)
    marker = d / COMPLETE
    if not marker.is_file():
        return not d.name.endswith(".tmp") and (d / META).is_file() and (d / WEIGHTS).is_file()
    try:
        files = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not isinstance(files, dict) or META not in files or WEIGHTS not in files:
        return False
    for name, info in files.items():
        p = d / name
        try:
            if not p.is_file() or p.stat().st_size != info["size"]:
                return False
            if verify and _digest(p)["sha256"] != info["sha256"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
    return True


def _old(final: Path) -> Path:
    return final.with_name(final.name + ".old")


def _temporaries(final: Path) -> list[Path]:
    if not final.parent.is_dir():
        return []
    return sorted(final.parent.glob(f".{final.name}.*.tmp"))


def _publish(src: Path, final: Path) -> None:
    """Rename the complete checkpoint ``src`` to ``final`` so one complete copy always exists."""
    old = _old(final)
    if final.exists():
        if is_complete(final):
            if old.exists():  # ``final`` is complete, so the older twin is redundant
                shutil.rmtree(old)
            os.replace(final, old)
            crash_point(f"{final.name}:moved-old")
        else:
            shutil.rmtree(final)
    os.replace(src, final)
    _fsync_dir(final.parent)
    crash_point(f"{final.name}:moved-new")
    if old.exists():
        shutil.rmtree(old)


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
        crash_point(f"{final.name}:written")
        _write_marker(tmp)
        crash_point(f"{final.name}:marked")
    except Exception:
        # A kill leaves the folder behind (no marker: never used; removed at the next start).
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish(tmp, final)
    return final


def _meta_order(directory: Path) -> tuple[int, int]:
    try:
        meta = json.loads((directory / META).read_text(encoding="utf-8"))
        return int(meta.get("epoch") or 0), int(meta.get("step") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return (-1, -1)


def find_checkpoint(directory: str | os.PathLike[str], verify: bool = False) -> Path | None:
    """The newest complete checkpoint among ``directory``, ``directory.old`` and marked temporaries.

    Newest by the sidecar's ``(epoch, step)``; on a tie the published name wins. None when
    nothing complete exists. ``verify`` also checks every file's SHA-256.
    """
    final = Path(directory)
    candidates = [final, _old(final), *_temporaries(final)]
    best: tuple[tuple[int, int, int], Path] | None = None
    for rank, cand in enumerate(candidates):
        if not cand.is_dir() or not is_complete(cand, verify=verify):
            continue
        key = (*_meta_order(cand), -rank)
        if best is None or key > best[0]:
            best = (key, cand)
    return best[1] if best is not None else None


def recover_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """Bring the newest complete checkpoint back to ``directory``; delete stale leftovers.

    Run at the start of training (one process): after a crash inside the swap the newest
    complete copy may sit in ``name.old`` or in a marked temporary folder. Returns
    ``directory`` when a checkpoint exists afterwards, else None.
    """
    final = Path(directory)
    found = find_checkpoint(final, verify=True)
    if found is not None and found != final:
        _publish(found, final)
    for stale in [_old(final), *_temporaries(final)]:
        if stale.exists():
            shutil.rmtree(stale, ignore_errors=True)
    return final if found is not None else None


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
