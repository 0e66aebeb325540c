"""On-disk cache of one video's features, keyed by the video's content and the extraction settings.

``sidetune ground`` / :class:`sidetune.grounding.inference.Grounder` extract a video's features
once; a second query on the same file (same bytes, same backbone / layers / pooling / clip
length) reads them back, so it costs only the text encoder and the model. Entries are
``{root}/{key}.npz`` holding ``features [K, T, F]`` (float32) and ``duration``; they are written
atomically, after the extraction finished, so an interrupted run never leaves a partial entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sidetune.utils.io import atomic_save

PathLike = str | os.PathLike[str]
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$SIDETUNE_CACHE_DIR/video_features``, else ``~/.cache/sidetune/video_features``."""
    base = os.environ.get("SIDETUNE_CACHE_DIR")
    root = Path(base) if base else Path.home() / ".cache" / "sidetune"
    return root / "video_features"


def file_digest(path: PathLike) -> str:
    """BLAKE2b (128-bit) of the file's bytes: the same video under another name hits the cache."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def cache_key(content_digest: str, settings: Mapping[str, Any]) -> str:
    """One key per (video content, extraction settings)."""
    blob = json.dumps(dict(settings), sort_keys=True, default=str).encode()
    return hashlib.blake2b(content_digest.encode() + b"\0" + blob, digest_size=16).hexdigest()


class VideoFeatureCache:
    """``get`` / ``put`` of ``(features [K, T, F] float32, duration seconds)`` by key."""

    def __init__(self, root: PathLike) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def get(self, key: str) -> tuple[np.ndarray, float] | None:
        """The cached entry, or None (also for an unreadable entry: it is simply recomputed)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                feats = np.asarray(data["features"], dtype=np.float32)
                duration = float(data["duration"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        if feats.ndim != 3 or 0 in feats.shape or not np.isfinite(feats).all():
            return None
        return feats, duration

    def put(self, key: str, feats: np.ndarray, duration: float) -> Path:
        path = self.path(key)
        arrays: dict[str, Any] = {
            "features": np.ascontiguousarray(feats, dtype=np.float32),
            "duration": np.float64(duration),
        }

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        atomic_save(path, write)
        return path


__all__ = ["VideoFeatureCache", "cache_key", "default_cache_dir", "file_digest"]
