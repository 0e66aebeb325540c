"""Keep less for backward: cheap tensors are rebuilt from what autograd keeps anyway.

A side block's backward needs, besides its matmul inputs, several tensors that are one cheap
elementwise step away from another saved tensor: a BatchNorm / LayerNorm output (its input is
saved by the norm's own backward), a GELU output (the GELU input is saved), the gate of the
TD-Adapter, the padded input of the depthwise temporal conv, the head-merged attention output
(the attention saves it unmerged). Inside :class:`LeanSaving`, a tensor registered with
:meth:`LeanSaving.rebuild` is not stored when an op saves it for backward: the saved slot holds
the recipe, and the tensor is rebuilt (no grad, same ops, same values) when backward asks for
it. Matmuls and attention are never recomputed, so the extra work is elementwise only.

The recipe's inputs are referenced, so registering ``y = f(x)`` saves memory only when ``x`` is
kept anyway (or is smaller) and ``y`` is not kept alive by someone else.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


class _Recipe:
    __slots__ = ("args", "fn", "size", "storage_offset", "stride")

    def __init__(self, fn: Callable[..., Tensor], args: tuple[Any, ...], view: Tensor) -> None:
        self.fn = fn
        self.args = args
        self.size = tuple(view.shape)
        self.stride = tuple(view.stride())
        self.storage_offset = view.storage_offset()

    def __call__(self) -> Tensor:
        with torch.no_grad():
            base = self.fn(*self.args)
        return base.as_strided(self.size, self.stride, self.storage_offset)


class _Saved:
    """What a saved-tensor slot holds: the tensor, or (once registered) its recipe."""

    __slots__ = ("__weakref__", "recipe", "tensor")

    def __init__(self, tensor: Tensor | None, recipe: _Recipe | None = None) -> None:
        self.tensor = tensor
        self.recipe = recipe


class LeanSaving:
    """Context manager over a forward pass; see the module docstring.

    ``rebuild(y, fn, *args)`` returns ``y`` and records that ``fn(*args)`` (a contiguous tensor
    laid out as ``y``) recomputes it. Saved views of ``y`` (slices, reshapes) are rebuilt as the
    same views, including slots filled before the registration (an op that saves its own
    output, such as ``sigmoid``). Outside a ``with`` block (or with ``enabled=False``)
    nothing changes.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._recipes: dict[
            int, tuple[weakref.ref[Tensor], Callable[..., Tensor], tuple[Any, ...]]
        ] = {}
        self._slots: dict[int, list[weakref.ref[_Saved]]] = {}
        self._hooks: Any = None

    def rebuild(self, y: Tensor, fn: Callable[..., Tensor], *args: Any) -> Tensor:
        if self._hooks is None or not _owns_storage(y):
            return y
        ptr = y.untyped_storage().data_ptr()
        self._recipes[ptr] = (weakref.ref(y), fn, args)
        for ref in self._slots.pop(ptr, []):  # slots that already hold y (or a view of it)
            slot = ref()
            t = None if slot is None else slot.tensor
            if slot is not None and t is not None and t.dtype == y.dtype and _ptr(t) == ptr:
                slot.recipe, slot.tensor = _Recipe(fn, args, t), None
        return y

    def _pack(self, t: Tensor) -> Any:
        ptr = _ptr(t)
        if ptr is None:
            return t
        entry = self._recipes.get(ptr)
        if entry is not None:
            base = entry[0]()
            # the registered tensor must still own this storage (addresses are reused once freed)
            if base is not None and _ptr(base) == ptr and t.dtype == base.dtype:
                return _Saved(None, _Recipe(entry[1], entry[2], t))
        slot = _Saved(t)
        self._slots.setdefault(ptr, []).append(weakref.ref(slot))
        return slot

    @staticmethod
    def _unpack(packed: Any) -> Tensor:
        if isinstance(packed, _Saved):
            if packed.recipe is not None:
                return packed.recipe()
            assert packed.tensor is not None
            return packed.tensor
        return packed

    def __enter__(self) -> LeanSaving:
        if self.enabled and torch.is_grad_enabled():
            self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
            self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._hooks is not None:
            self._hooks.__exit__(*exc)
            self._hooks = None
        self._recipes.clear()
        self._slots.clear()


def _owns_storage(y: Tensor) -> bool:
    """``y`` is its storage, laid out contiguously (so a recomputed ``y`` can stand in for it)."""
    return (
        y.is_contiguous()
        and y.storage_offset() == 0
        and y.untyped_storage().nbytes() == y.numel() * y.element_size()
    )


def _ptr(t: Tensor) -> int | None:
    try:
        return int(t.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError):
        return None


_ACTIVE: list[LeanSaving] = []


def lean_active() -> bool:
    """Whether a :class:`LeanSaving` is recording (inside ``lean_saving`` with grad enabled)."""
    return bool(_ACTIVE) and _ACTIVE[-1]._hooks is not None


def rebuild(y: Tensor, fn: Callable[..., Tensor], *args: Any) -> Tensor:
    """Register ``y = fn(*args)`` with the innermost active :class:`LeanSaving` (no-op without)."""
    return _ACTIVE[-1].rebuild(y, fn, *args) if _ACTIVE else y


class lean_saving:
    """``with lean_saving(enabled):`` -- activate a :class:`LeanSaving` for :func:`rebuild`."""

    def __init__(self, enabled: bool = True) -> None:
        self.ctx = LeanSaving(enabled)

    def __enter__(self) -> LeanSaving:
        _ACTIVE.append(self.ctx)
        return self.ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.ctx.__exit__(*exc)
        _ACTIVE.pop()
