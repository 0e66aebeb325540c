"""Read foreign ``torch.save`` files without executing their code.

Training scripts often pickle more than tensors: InternVideo2's saves
``{"model": state_dict, "config": <EasyDict>, "optimizer": ..., "epoch": ...}``. Plain
``torch.load`` would import and call whatever the file names (arbitrary code), and
``torch.load(weights_only=True)`` rightly refuses the file. :func:`safe_load` reads it with a
restricted unpickler:

* globals that ``weights_only`` loading allows (tensor rebuild functions, dtypes,
  ``OrderedDict``, ...) resolve to the real objects, so tensors and plain containers come back
  as they were saved;
* every other global (``easydict.EasyDict``, ``argparse.Namespace``, ``os.system``, ...)
  resolves to a fresh subclass of :class:`OpaqueObject`, an inert container that records the
  arguments, items and state the pickle gives it. The named class or function is never
  imported and never called.

API::

    obj = safe_load(path)                   # the whole pickled object, tensors on CPU
    top = load_checkpoint_tensors(path)     # the same, required to be a mapping (dict)
    top["model"]                            # {key: tensor}
    top["config"].pickled_class             # "easydict.EasyDict"; dict items kept
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import types
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from sidetune.errors import SidetuneError


class UnsafePickleError(SidetuneError, ValueError):
    """A pickle file that cannot be read as data (names the file and the reason)."""


class OpaqueObject(dict):  # type: ignore[type-arg]
    """Inert stand-in for an object of a class we refuse to import.

    It keeps what the pickle stream gives it: constructor ``args`` / ``kwargs``, dict items
    (a ``dict`` subclass such as ``EasyDict`` keeps its items), list items in ``list_items``
    and the ``__setstate__`` payload in ``state``. ``pickled_class`` names the original.
    """

    pickled_class: ClassVar[str] = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> OpaqueObject:
        obj = super().__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None, list_items=[])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # never dict(*args)
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def append(self, item: Any) -> None:
        self.__dict__["list_items"].append(item)

    def extend(self, items: Any) -> None:
        self.__dict__["list_items"].extend(items)

    def __reduce__(self) -> Any:  # not meant to be pickled again as the original
        raise TypeError(f"cannot pickle an opaque stand-in for {self.pickled_class}")

    def __repr__(self) -> str:
        return f"<opaque {self.pickled_class} items={dict.__repr__(self)}>"


def _opaque_class(module: str, name: str) -> type[OpaqueObject]:
    return type(
        name, (OpaqueObject,), {"pickled_class": f"{module}.{name}", "__module__": __name__}
    )


def _allowed_globals() -> dict[str, Any]:
    from torch import _weights_only_unpickler

    allowed: dict[str, Any] = dict(_weights_only_unpickler._get_allowed_globals())
    allowed["torch.nn.parameter.Parameter"] = torch.nn.Parameter
    return allowed


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """Safe ``copyreg._reconstructor``: only opaque classes are instantiated."""
    if isinstance(cls, type) and issubclass(cls, OpaqueObject):
        obj = cls.__new__(cls)
        if state is not None and isinstance(state, Mapping):
            dict.update(obj, state)
        return obj
    raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r}")


class SafeUnpickler(pickle.Unpickler):
    """Resolves allowed globals to the real objects and all others to :class:`OpaqueObject`."""

    _allowed: ClassVar[dict[str, Any] | None] = None

    def find_class(self, module: str, name: str) -> Any:
        if SafeUnpickler._allowed is None:
            SafeUnpickler._allowed = _allowed_globals()
        key = f"{module}.{name}"
        if key == "copyreg._reconstructor":
            return _reconstructor
        if key in SafeUnpickler._allowed:
            return SafeUnpickler._allowed[key]
        if module == "builtins" and name in ("set", "frozenset", "slice", "range", "complex"):
            return getattr(builtins, name)
        return _opaque_class(module, name)


def _load(file: Any, **kw: Any) -> Any:
    return SafeUnpickler(file, **kw).load()


def _loads(data: bytes, **kw: Any) -> Any:
    return SafeUnpickler(io.BytesIO(data), **kw).load()


# torch.load(pickle_module=...) wraps ``Unpickler`` (zip format) and calls ``load`` (legacy).
_PICKLE_MODULE = types.ModuleType("sidetune_safe_pickle")
_PICKLE_MODULE.Unpickler = SafeUnpickler  # type: ignore[attr-defined]
_PICKLE_MODULE.load = _load  # type: ignore[attr-defined]
_PICKLE_MODULE.loads = _loads  # type: ignore[attr-defined]
_PICKLE_MODULE.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]
_PICKLE_MODULE.__name__ = "sidetune_safe_pickle"


def safe_load(path: str | os.PathLike[str]) -> Any:
    """Everything in a ``torch.save`` file, tensors on CPU, foreign classes as opaque objects."""
    try:
        return torch.load(
            path, map_location="cpu", weights_only=False, pickle_module=_PICKLE_MODULE
        )
    except FileNotFoundError as exc:
        raise UnsafePickleError(f"{path}: file does not exist") from exc
    except Exception as exc:  # corrupt archives and refused constructs raise many types
        raise UnsafePickleError(
            f"{path}: cannot read as data ({type(exc).__name__}: {exc})"
        ) from exc


def load_checkpoint_tensors(path: str | os.PathLike[str]) -> dict[str, Any]:
    """:func:`safe_load` a checkpoint whose top level is a mapping (``{"model": sd, ...}``)."""
    obj = safe_load(path)
    if not isinstance(obj, Mapping):
        raise UnsafePickleError(
            f"{path}: expected a dict at the top level, got {type(obj).__name__}"
        )
    return dict(obj)


__all__ = [
    "OpaqueObject",
    "SafeUnpickler",
    "UnsafePickleError",
    "load_checkpoint_tensors",
    "safe_load",
]
