"""The one helper that finds the read-only ``../shared`` folder (papers, annotations, fixtures).

Tests call ``shared_path("data", "qvhighlights", "highlight_val_release.jsonl")``; when the
folder or the file is absent the test is skipped with a reason that says where it looked.
Set ``SIDETUNE_SHARED`` to point elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]


def shared_root() -> Path | None:
    env = os.environ.get("SIDETUNE_SHARED")
    candidates = [Path(env)] if env else []
    candidates += [_REPO.parent / "shared", _REPO / ".." / ".." / "shared"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


def shared_path(*parts: str) -> Path:
    """Path under ``../shared``; skips the calling test with a clear reason if missing."""
    root = shared_root()
    if root is None:
        pytest.skip(f"../shared not found (looked beside {_REPO}; set SIDETUNE_SHARED)")
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared file missing: {path}")
    return path
