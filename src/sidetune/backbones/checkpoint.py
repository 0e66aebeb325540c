"""Loading released backbone weights from a local file, with an honest key report.

Released checkpoints come in many wrappers: DeepSpeed / DDP files hold ``{"module": sd}`` or
``{"model": sd}``, keys may carry ``module.`` (DDP) and a sub-model prefix such as
``vision_encoder.`` or ``text_encoder.bert.``. :func:`read_state_dict` reads any of
``.safetensors``, ``.pt``/``.pth``/``.bin`` (``torch.load(weights_only=True)``; files that also
pickle config objects go through a restricted unpickler that never runs their code) or a
directory holding one of them;
:func:`select_prefix` unwraps and strips prefixes; :func:`load_checked` loads into a module and
returns a :class:`LoadReport` (missing / unexpected / ignored / adapted keys), raising
:class:`CheckpointError` when required weights are missing or shapes disagree.
"""

from __future__ import annotations

import fnmatch
import os
import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from sidetune.errors import SidetuneError

StateDict = dict[str, torch.Tensor]
_WRAPPER_KEYS = ("module", "model", "state_dict", "model_state_dict")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth")
_SHOW = 12  # how many keys an error message lists before "... and N more"


class CheckpointError(SidetuneError, ValueError):
    """A checkpoint that cannot be read or does not fit the model; names the file and keys."""


@dataclass
class LoadReport:
    """What happened when loading ``path`` into a model.

    ``missing``: model keys absent from the checkpoint (left at their initial values);
    ``unexpected``: checkpoint keys the model has no place for and that are not known-unused;
    ``ignored``: checkpoint keys known to be unused here (e.g. distillation heads);
    ``adapted``: keys whose tensor was resized to fit (e.g. interpolated position embeddings).
    """

    path: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected

    def summary(self) -> str:
        parts = [f"{self.path}: loaded {self.loaded} tensors"]
        for label, keys in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("ignored (known unused)", self.ignored),
            ("adapted", self.adapted),
        ):
            if keys:
                parts.append(f"{len(keys)} {label} [{_preview(keys)}]")
        return "; ".join(parts)

    def __str__(self) -> str:
        return self.summary()


def _preview(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (f", ... and {len(keys) - _SHOW} more" if len(keys) > _SHOW else "")


def _resolve_file(path: Path) -> Path:
    if path.is_dir():
        for name in _WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        found = (
            sorted(path.glob("*.safetensors"))
            + sorted(path.glob("*.pt"))
            + sorted(path.glob("*.pth"))
        )
        if len(found) == 1:
            return found[0]
        raise CheckpointError(
            f"{path}: directory holds no single weight file (looked for {', '.join(_WEIGHT_FILES)}, "
            f"*.safetensors, *.pt, *.pth; found {len(found)})"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    return path


def read_state_dict(path: str | os.PathLike[str]) -> StateDict:
    """Read a flat ``{key: tensor}`` from a local checkpoint, unwrapping ``module``/``model``."""
    file = _resolve_file(Path(path))
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(file), device="cpu")
        else:
            obj = _torch_load(file)
    except Exception as exc:  # torch/safetensors raise many types for bad or unsafe files
        raise CheckpointError(
            f"{file}: cannot read checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    state = unwrap(obj, file)
    return state


def _torch_load(file: Path) -> object:
    """``weights_only`` load; a file that pickles other objects too (e.g. the official
    training script's ``{"model": sd, "config": EasyDict}``) is read with the restricted
    unpickler of :mod:`sidetune.interop.safe_pickle`, which never runs the file's code."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        from sidetune.interop.safe_pickle import safe_load

        return safe_load(file)


def unwrap(obj: object, path: str | os.PathLike[str] = "<checkpoint>") -> StateDict:
    """Descend through ``{"module": ...}`` / ``{"model": ...}`` / ``{"state_dict": ...}`` wrappers."""
    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None or any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, got {type(obj).__name__}")
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(
            f"{path}: no tensors found (top-level keys: {_preview(sorted(map(str, obj)))})"
        )
    return state


def strip_module_prefix(state: StateDict) -> StateDict:
    """Remove DDP's leading ``module.`` from every key that has it."""
    return {k.removeprefix("module."): v for k, v in state.items()}


def select_prefix(state: StateDict, prefixes: Iterable[str]) -> tuple[StateDict, str]:
    """Keep the keys under the first prefix present (prefix stripped); else return all keys.

    ``module.`` is stripped first. Returns ``(sub_state, prefix_used)`` (``""`` if none matched).
    """
    state = strip_module_prefix(state)
    for prefix in prefixes:
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if sub:
            return sub, prefix
    return state, ""


Adapter = Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor | None]
"""``(key, checkpoint_tensor, model_tensor) -> resized tensor`` or ``None`` if it cannot adapt."""


def load_checked(
    module: nn.Module,
    state: StateDict,
    path: str | os.PathLike[str],
    *,
    ignore: Iterable[str] = (),
    adapt: Adapter | None = None,
    strict: bool = True,
) -> LoadReport:
    """Copy ``state`` into ``module`` and report; raise :class:`CheckpointError` on real problems.

    ``ignore``: glob patterns of checkpoint keys known to be unused (reported, not an error).
    ``adapt``: called for shape mismatches (e.g. position embedding interpolation).
    ``strict``: missing or unexpected keys raise (with the first keys listed); otherwise they
    are only reported. Shape mismatches that ``adapt`` cannot fix always raise.
    """
    report = LoadReport(path=str(path))
    own = module.state_dict()
    patterns = list(ignore)
    to_load: StateDict = {}
    bad_shapes: list[str] = []
    for key, value in state.items():
        if key not in own:
            if any(fnmatch.fnmatchcase(key, p) for p in patterns):
                report.ignored.append(key)
            else:
                report.unexpected.append(key)
            continue
        target = own[key]
        if value.shape != target.shape:
            fixed = adapt(key, value, target) if adapt is not None else None
            if fixed is None or fixed.shape != target.shape:
                bad_shapes.append(
                    f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(target.shape)}"
                )
                continue
            value = fixed
            report.adapted.append(f"{key} {tuple(state[key].shape)}->{tuple(target.shape)}")
        to_load[key] = value.to(dtype=target.dtype)
    report.missing = sorted(k for k in own if k not in to_load and k not in _shape_keys(bad_shapes))
    if bad_shapes:
        raise CheckpointError(
            f"{path}: shape mismatch for {len(bad_shapes)} tensors: {_preview(bad_shapes)}"
        )
    if strict and report.missing:
        hint = ""
        if report.unexpected:
            hint = f"; the checkpoint has unused keys such as [{_preview(report.unexpected[:4])}] — wrong model size or key layout?"
        raise CheckpointError(
            f"{path}: {len(report.missing)} weights missing from the checkpoint: [{_preview(report.missing)}]{hint}"
        )
    if strict and report.unexpected:
        raise CheckpointError(
            f"{path}: {len(report.unexpected)} unexpected keys in the checkpoint: [{_preview(report.unexpected)}]"
        )
    module.load_state_dict(to_load, strict=False)
    report.loaded = len(to_load)
    return report


def _shape_keys(bad: list[str]) -> set[str]:
    return {b.split(":", 1)[0] for b in bad}
