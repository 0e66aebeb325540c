"""R2-Tuning's multi-layer CLIP cache ([T, K, P, C] video, [L, K, C] text) read as [K, T, C]."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sidetune.features.store import FeatureError, FeatureStore, load_r2tuning_file
from sidetune.grounding.data import DataConfig, GroundingDataset


def _write(root: Path, T: int = 6, K: int = 3, P: int = 5, C: int = 8, L: int = 4) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    rng = np.random.default_rng(0)
    video = rng.standard_normal((T, K, P, C)).astype(np.float16)
    text = rng.standard_normal((L, K, C)).astype(np.float16)
    (root / "v").mkdir(parents=True)
    (root / "t").mkdir()
    np.save(root / "v" / "vid1.npy", video)
    np.save(root / "t" / "7.npy", text)  # R2-Tuning names query files by the bare qid
    return video, text


def test_token_pooling_and_layer_axis(tmp_path: Path) -> None:
    video, text = _write(tmp_path)
    cls = load_r2tuning_file(tmp_path / "v" / "vid1.npy", "video", "cls")
    mean = load_r2tuning_file(tmp_path / "v" / "vid1.npy", "video", "mean")
    assert cls.shape == mean.shape == (3, 6, 8)
    # Hand-derived: layer k, clip t = token 0 (cls) / mean of tokens 1.. (mean) of video[t, k].
    np.testing.assert_array_equal(cls[2, 4], video[4, 2, 0].astype(np.float32))
    np.testing.assert_allclose(mean[1, 3], video[3, 1, 1:].astype(np.float32).mean(0), rtol=1e-6)
    t = FeatureStore(tmp_path / "t", "text", layout="r2tuning").get(7)
    assert t.shape == (3, 4, 8)
    np.testing.assert_array_equal(t[1, 2], text[2, 1])


def test_dataset_reads_the_layout_and_bad_shapes_name_the_file(tmp_path: Path) -> None:
    _write(tmp_path)
    ann = tmp_path / "val.jsonl"
    ann.write_text(json.dumps({"qid": 7, "vid": "vid1", "query": "q", "duration": 12.0,
                               "relevant_windows": [[2, 6]]}) + "\n")  # fmt: skip
    cfg = DataConfig(dataset="charades", val=str(ann), video_features=str(tmp_path / "v"),
                     text_features=str(tmp_path / "t"), feature_layout="r2tuning",
                     token_pool="mean")  # fmt: skip
    sample = GroundingDataset(cfg, "val")[0]
    assert sample["video_feats"].shape == (3, 6, 8) and sample["text_feats"].shape == (3, 4, 8)
    np.save(tmp_path / "v" / "vid1.npy", np.zeros((6, 8), np.float16))  # a [T, F] file
    with pytest.raises(FeatureError, match=r"vid1\.npy.*\[T, K, P, C\]"):
        load_r2tuning_file(tmp_path / "v" / "vid1.npy", "video")
