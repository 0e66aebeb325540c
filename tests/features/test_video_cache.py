"""The per-video feature cache: keys follow content and settings, entries are complete or absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sidetune.features.video_cache import VideoFeatureCache, cache_key, file_digest


def test_key_follows_content_not_name_and_settings(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"
    a.write_bytes(b"x" * 3000)
    b.write_bytes(b"x" * 3000)
    c.write_bytes(b"x" * 2999 + b"y")
    assert file_digest(a) == file_digest(b) != file_digest(c)
    s = {"backbone": "internvideo2-tiny", "layers": [1, 2]}
    assert cache_key(file_digest(a), s) == cache_key(file_digest(b), dict(s))
    assert cache_key(file_digest(a), s) != cache_key(file_digest(a), {**s, "layers": [1]})


def test_roundtrip_and_corrupt_entries_are_misses(tmp_path: Path) -> None:
    cache = VideoFeatureCache(tmp_path)
    feats = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    assert cache.get("k") is None
    cache.put("k", feats, 9.5)
    got = cache.get("k")
    assert got is not None and got[1] == 9.5
    np.testing.assert_array_equal(got[0], feats)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.npz"]  # no temporary left behind
    cache.path("bad").write_bytes(b"PK\x03\x04 truncated")
    assert cache.get("bad") is None
    nan = feats.copy()
    nan[0, 0, 0] = np.nan
    cache.put("nan", nan, 1.0)
    assert cache.get("nan") is None
