"""Where the benchmarks find the read-only ``../shared`` folder (as ``tests/shared_data.py``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def find_shared(explicit: str | None, marker: str) -> Path:
    """``--shared``, ``$SIDETUNE_SHARED`` or ``../shared``: the first holding ``marker``."""
    candidates = [Path(explicit)] if explicit else []
    if os.environ.get("SIDETUNE_SHARED"):
        candidates.append(Path(os.environ["SIDETUNE_SHARED"]))
    candidates += [REPO.parent / "shared", REPO / ".." / ".." / "shared"]
    for c in candidates:
        if (c / marker).is_dir():
            return c.resolve()
    sys.exit("shared data not found: pass --shared or set SIDETUNE_SHARED")
