"""Switch between the fast paths and the plain reference paths (same maths, fewer ops).

Fast paths are on by default. ``with plain_paths():`` runs the plain reference code instead,
so tests and benchmarks can check that both give the same outputs and gradients. The switch
is process-global (not thread-local): use it around whole forward/backward passes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
