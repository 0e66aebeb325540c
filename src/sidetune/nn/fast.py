"""Process-global switches between code paths that compute the same maths.

- Fast paths (default on): ``with plain_paths():`` runs the plain reference code instead, so
  tests and benchmarks can check that both give the same outputs and gradients.
- Synchronisation-free paths: taken on accelerators (see :func:`sync_free`); ``with
  sync_free_paths():`` takes them on the CPU as well, for tests.

The switches are not thread-local: use them around whole forward/backward passes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_FAST = True


def fast_paths() -> bool:
    """Whether the fast paths are active."""
    return _FAST


@contextlib.contextmanager
def plain_paths(plain: bool = True) -> Iterator[None]:
    """Run the plain reference paths inside the block (``plain=False``: leave as is)."""
    global _FAST
    previous = _FAST
    _FAST = not plain and previous
    try:
        yield
    finally:
        _FAST = previous


_SYNC_FREE = False


def sync_free(device: torch.device) -> bool:
    """Whether code on ``device`` must avoid host synchronisation (``.item()``, ``bool(t)``,
    data-dependent shapes): on every accelerator, and on the CPU inside
    :func:`sync_free_paths` (so tests can run the accelerator path without one)."""
    return device.type != "cpu" or _SYNC_FREE


@contextlib.contextmanager
def sync_free_paths() -> Iterator[None]:
    """Take the accelerator (synchronisation-free) code paths on the CPU too."""
    global _SYNC_FREE
    previous = _SYNC_FREE
    _SYNC_FREE = True
    try:
        yield
    finally:
        _SYNC_FREE = previous
