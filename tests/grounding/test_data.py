"""Grounding dataset + collate: targets, layer selection, long videos, errors, batches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sidetune.config import ConfigError, from_dict
from sidetune.errors import SidetuneError
from sidetune.features.store import save_text_features, save_video_features
from sidetune.grounding.annotations import GroundingRecord
from sidetune.grounding.data import (
    DataConfig,
    DataError,
    GroundingDataset,
    build_datasets,
    collate_grounding,
    window_saliency,
)
from sidetune.grounding.synthetic import SynthConfig, generate, write


def _row(qid: Any, vid: str, duration: float, windows: list[list[float]], **extra: Any) -> dict:
    return {"qid": qid, "query": f"query {qid}", "vid": vid, "duration": duration, "relevant_windows": windows, **extra}  # fmt: skip


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _video(num_layers: int, num_clips: int, dim: int = 8) -> np.ndarray:
    # Layer k, clip t, dim f holds 100 k + t (exact in float16 for t < 1024): easy to trace.
    k = np.arange(num_layers)[:, None, None]
    t = np.arange(num_clips)[None, :, None]
    return np.broadcast_to(100.0 * k + t, (num_layers, num_clips, dim)).copy()


@pytest.fixture
def qvh(tmp_path: Path) -> DataConfig:
    """Hand-made QVHighlights-style set: 150-s videos, 2-s clips, 4-layer features."""
    vdir, tdir = tmp_path / "video", tmp_path / "text"
    save_video_features(vdir, "v150", _video(4, 75))
    save_video_features(vdir, "v74", _video(4, 74))  # one clip short of the duration
    save_video_features(vdir, "v1layer", _video(1, 75)[0])  # [T, F]
    for qid, length in ((1, 6), (2, 40), (3, 9), (4, 5)):
        save_text_features(tdir, qid, _video(4, length, dim=5))
    rows = [
        _row(1, "v150", 150, [[10, 20]], relevant_clip_ids=[5, 6, 7, 8, 9],
             saliency_scores=[[1, 2, 3], [4, 4, 4], [0, 0, 1], [2, 2, 2], [3, 3, 3]]),
        _row(2, "v74", 150, [[140, 150], [0, 4]], relevant_clip_ids=[0, 1, 70, 71, 72, 73, 74],
             saliency_scores=[[1, 1, 1]] * 6 + [[4, 4, 4]]),
        _row(4, "v150", 4.0, [[0, 2]], relevant_clip_ids=[0], saliency_scores=[[4, 4, 4]]),
    ]  # fmt: skip
    path = _write_jsonl(tmp_path / "train.jsonl", rows)
    return DataConfig(
        dataset="qvhighlights",
        train=path,
        val=path,
        video_features=str(vdir),
        text_features=str(tdir),
        max_clips=75,
    )


def test_targets_center_width_and_annotator_saliency(qvh: DataConfig) -> None:
    ds = GroundingDataset(qvh, "train")
    assert [r.qid for r in ds.records] == [1, 2]  # qid 4 (4 s < min_video_len 5) skipped
    s = ds[0]
    assert s["video_feats"].shape == (4, 75, 8) and s["text_feats"].shape == (4, 6, 5)
    # [10, 20] s in a 150-s timeline -> center 15/150, width 10/150.
    np.testing.assert_allclose(s["spans"], [[0.1, 10 / 150]], rtol=1e-6)
    expected = np.zeros(75, dtype=np.float32)
    expected[5:10] = [6, 12, 1, 6, 9]  # sum of the 3 annotators
    np.testing.assert_array_equal(s["saliency"], expected)
    assert s["meta"] == {"qid": 1, "vid": "v150", "query": "query 1", "duration": 150.0, "num_clips": 75, "clip_length": 2.0}  # fmt: skip


def test_feature_length_wins_over_duration(qvh: DataConfig) -> None:
    s = GroundingDataset(qvh, "train")[1]
    timeline = 74 * 2.0  # the features have 74 clips although the video lasts 150 s
    assert s["meta"]["num_clips"] == 74 and s["meta"]["duration"] == 150.0
    np.testing.assert_allclose(s["spans"], [[144 / timeline, 8 / timeline], [2 / timeline, 4 / timeline]], rtol=1e-6)  # fmt: skip
    assert s["saliency"].shape == (74,)
    assert s["saliency"][73] == 3 and s["saliency"][0] == 3  # clip 74 does not exist: dropped


def test_min_video_len_applies_to_training_only(qvh: DataConfig) -> None:
    assert len(GroundingDataset(qvh, "val")) == 3
    qvh.min_video_len = 0.0
    assert len(GroundingDataset(qvh, "train")) == 3


def test_layer_selection_and_last_layer_only(qvh: DataConfig) -> None:
    qvh.layers = [-1, 0]
    s = GroundingDataset(qvh, "train")[0]
    assert s["video_feats"][:, 3, 0].tolist() == [303, 3]
    assert s["text_feats"][:, 2, 0].tolist() == [302, 2]
    qvh.layers, qvh.last_layer_only = [0, 1, 2], True
    s = GroundingDataset(qvh, "train")[0]
    assert s["video_feats"][:, 3, 0].tolist() == [203, 203, 203]
    assert s["text_feats"].shape[0] == 3
    qvh.layers, qvh.last_layer_only, qvh.text_layers = None, False, [0, 0, 1, 1]
    s = GroundingDataset(qvh, "train")[0]
    assert s["video_feats"][:, 3, 0].tolist() == [3, 103, 203, 303]
    assert s["text_feats"][:, 2, 0].tolist() == [2, 2, 102, 102]
    qvh.layers = [4]
    with pytest.raises(DataError, match=r"vid 'v150'.*layer index 4 out of range.*4 layer"):
        GroundingDataset(qvh, "train")[0]
    qvh.layers, qvh.text_layers = None, [0, 1]
    with pytest.raises(DataError, match=r"qid 1.*2 layer\(s\) selected but the video has 4"):
        GroundingDataset(qvh, "train")[0]


def test_two_dim_files_count_as_one_layer(tmp_path: Path, qvh: DataConfig) -> None:
    save_text_features(qvh.text_features, 3, _video(1, 7, dim=5)[0])  # [L, F]
    rows = [_row(3, "v1layer", 150, [[10, 20]], relevant_clip_ids=[5], saliency_scores=[[1, 1, 1]])]
    qvh.train = _write_jsonl(tmp_path / "one.jsonl", rows)
    s = GroundingDataset(qvh, "train")[0]
    assert s["video_feats"].shape == (1, 75, 8) and s["text_feats"].shape == (1, 7, 5)
    qvh.layers = [-1, -1, -1]  # a one-layer file repeated to K = 3
    s = GroundingDataset(qvh, "train")[0]
    assert s["video_feats"].shape == (3, 75, 8)
    assert s["text_feats"].shape == (3, 7, 5)  # one-layer text follows the video's K


def test_long_videos_are_pooled_or_truncated(tmp_path: Path, qvh: DataConfig) -> None:
    save_video_features(qvh.video_features, "v300", _video(2, 150))
    save_text_features(qvh.text_features, 9, _video(2, 3, dim=5))
    rows = [_row(9, "v300", 300, [[100, 140], [250, 260]],
                 relevant_clip_ids=[50, 51, 125], saliency_scores=[[4, 4, 4], [2, 2, 2], [1, 1, 1]])]  # fmt: skip
    qvh.train = _write_jsonl(tmp_path / "long.jsonl", rows)
    s = GroundingDataset(qvh, "train")[0]  # pool: 150 clips -> 75 bins of 2
    assert s["video_feats"].shape == (2, 75, 8) and s["video_feats"].dtype == np.float32
    np.testing.assert_allclose(s["video_feats"][1, :3, 0], [100.5, 102.5, 104.5])
    assert s["meta"]["num_clips"] == 75 and s["meta"]["clip_length"] == 4.0
    np.testing.assert_allclose(s["spans"], [[120 / 300, 40 / 300], [255 / 300, 10 / 300]], rtol=1e-6)  # fmt: skip
    assert s["saliency"][25] == 9 and s["saliency"][62] == 1.5 and s["saliency"].sum() == 10.5

    qvh.long_video, qvh.max_clips = "truncate", 60  # keep the first 120 s
    s = GroundingDataset(qvh, "train")[0]
    assert s["video_feats"].shape == (2, 60, 8) and s["meta"]["clip_length"] == 2.0
    np.testing.assert_allclose(s["spans"], [[110 / 120, 20 / 120]], rtol=1e-6)  # [100, 120]
    assert s["saliency"].shape == (60,) and s["saliency"].sum() == 18


def test_query_length_cap(qvh: DataConfig) -> None:
    qvh.max_query_len = 32
    ds = GroundingDataset(qvh, "train")
    assert ds[1]["text_feats"].shape == (4, 32, 5)  # qid 2 has 40 tokens
    assert ds[1]["text_feats"][0, :, 0].tolist() == list(range(32))  # the first tokens stay


def test_charades_binary_saliency(tmp_path: Path) -> None:
    vdir, tdir = tmp_path / "v", tmp_path / "t"
    save_video_features(vdir, "c1", _video(2, 12))
    save_text_features(tdir, 0, _video(2, 4))
    path = _write_jsonl(tmp_path / "c.jsonl", [_row(0, "c1", 11.5, [[2.5, 5.2], [7.2, 7.4]])])
    cfg = DataConfig(dataset="charades", train=path, video_features=str(vdir), text_features=str(tdir))  # fmt: skip
    s = GroundingDataset(cfg, "train")[0]
    assert s["meta"]["clip_length"] == 1.0  # CLIP_LENGTH["charades"]
    # clips 2..4 overlap [2.5, 5.2] by >= half a clip; clip 7 holds the tiny window's midpoint.
    assert np.flatnonzero(s["saliency"]).tolist() == [2, 3, 4, 7]
    assert set(s["saliency"].tolist()) == {0.0, 1.0}
    np.testing.assert_allclose(s["spans"][0], [3.85 / 12, 2.7 / 12], rtol=1e-5)


def test_records_argument_and_reversed_windows(qvh: DataConfig) -> None:
    rec = GroundingRecord(1, "v150", "q", 150.0, ((20.0, 10.0), (149.0, 170.0)))
    ds = GroundingDataset(qvh, "val", records=[rec])
    s = ds[0]  # no annotator scores: binary saliency from the windows
    np.testing.assert_allclose(s["spans"], [[0.1, 10 / 150], [149.5 / 150, 1 / 150]], rtol=1e-6)
    assert np.flatnonzero(s["saliency"]).tolist() == [5, 6, 7, 8, 9, 74]


def test_window_saliency_never_empty_for_a_window() -> None:
    sal = window_saliency(np.array([[3.1, 3.2]]), num_clips=5, clip_length=2.0)
    assert sal.tolist() == [0, 1, 0, 0, 0]


def test_missing_features_name_qid_vid_and_directory(qvh: DataConfig, tmp_path: Path) -> None:
    rows = [_row(1, "v150", 150, [[10, 20]], relevant_clip_ids=[5], saliency_scores=[[1, 1, 1]]),
            _row(77, "ghost", 150, [[10, 20]], relevant_clip_ids=[5], saliency_scores=[[1, 1, 1]])]  # fmt: skip
    qvh.train = _write_jsonl(tmp_path / "m.jsonl", rows)
    with pytest.raises(DataError, match=r"m\.jsonl: video features for vid 'ghost' \(qid 77\) not found in .*video") as e:  # fmt: skip
        GroundingDataset(qvh, "train")
    assert "1 more problem" in str(e.value)  # its text features are missing too
    qvh.video_features = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"data\.video_features"):
        GroundingDataset(qvh, "train")


def test_rows_without_ground_truth(tmp_path: Path, qvh: DataConfig) -> None:
    row = {"qid": 1, "query": "q", "vid": "v150", "duration": 150}
    qvh.test = _write_jsonl(tmp_path / "test.jsonl", [row])
    ds = GroundingDataset(qvh, "test")
    assert not ds.has_targets and ds[0]["spans"] is None and ds[0]["saliency"] is None
    batch = collate_grounding([ds[0]])
    assert "targets" not in batch and batch["metas"][0]["qid"] == 1
    qvh.train = qvh.test
    with pytest.raises(DataError, match="qid 1 has no relevant_windows"):
        GroundingDataset(qvh, "train")
    with_gt = GroundingDataset(qvh, "val")[0]
    with pytest.raises(DataError, match="mixes"):
        collate_grounding([with_gt, ds[0]])


def test_collate_pads_and_masks(qvh: DataConfig) -> None:
    ds = GroundingDataset(qvh, "train")
    batch = collate_grounding([ds[0], ds[1]])
    assert batch["video_feats"].shape == (2, 4, 75, 8) and batch["video_feats"].dtype == torch.float32  # fmt: skip
    assert batch["text_feats"].shape == (2, 4, 32, 5)
    assert batch["video_mask"].dtype == torch.bool
    assert batch["video_mask"].sum(1).tolist() == [75, 74]
    assert batch["text_mask"].sum(1).tolist() == [6, 32]
    assert batch["video_feats"][1, :, 74].abs().sum() == 0  # padded clip
    assert batch["text_feats"][0, :, 6:].abs().sum() == 0  # padded tokens
    assert torch.equal(batch["video_feats"][0, 2, :, 0], torch.arange(75.0) + 200)
    spans = batch["targets"]["spans"]
    assert [tuple(s.shape) for s in spans] == [(1, 2), (2, 2)] and spans[0].dtype == torch.float32
    sal = batch["targets"]["saliency"]
    assert sal.shape == (2, 75) and sal[1, 74] == 0 and sal[0, 6] == 12
    assert [m["qid"] for m in batch["metas"]] == [1, 2]


def test_collate_rejects_inconsistent_dims(qvh: DataConfig) -> None:
    ds = GroundingDataset(qvh, "train")
    a, b = ds[0], ds[1]
    b = {**b, "video_feats": b["video_feats"][:, :, :4]}
    with pytest.raises(DataError, match=r"video_feats of qid 2 has shape"):
        collate_grounding([a, b])


def test_config_validation() -> None:
    cfg = from_dict(DataConfig, {"dataset": "tacos", "layers": [-4, -3, -2, -1], "max_clips": None})
    assert cfg.layers == [-4, -3, -2, -1] and cfg.resolved_clip_length == 2.0
    for bad in ({"max_clips": 0}, {"layers": []}, {"clip_length": -1.0}, {"dataset": "ego4d"}, {"nope": 1}):  # fmt: skip
        with pytest.raises(ConfigError):
            from_dict(DataConfig, bad)


def test_dataset_on_synthetic_benchmark(tmp_path: Path) -> None:
    bench = generate(SynthConfig(videos=16, seed=3))
    write(bench, tmp_path)
    cfg = DataConfig(
        train=str(tmp_path / "train.jsonl"),
        val=str(tmp_path / "val.jsonl"),
        test=str(tmp_path / "test.jsonl"),
        video_features=str(tmp_path / "video_features"),
        text_features=str(tmp_path / "text_features"),
        cache_features=True,
    )
    sets = build_datasets(cfg)
    assert set(sets) == {"train", "val", "test"}
    train = sets["train"]
    assert train.feature_shapes() == {"num_levels": 4, "video_dim": 64, "text_dim": 48}
    for i in range(len(train)):
        s = train[i]
        rec = train.records[i]
        assert s["video_feats"].shape[1] == round(rec.duration / 2.0)
        assert np.all((s["spans"] >= 0) & (s["spans"] <= 1)) and np.all(s["spans"][:, 1] > 0)
        assert np.flatnonzero(s["saliency"]).tolist() == sorted(
            c for c, sc in zip(rec.relevant_clip_ids or (), rec.saliency_scores or ()) if sum(sc)
        )
    batch = collate_grounding([train[i] for i in range(len(train))])
    assert batch["video_feats"].shape[:2] == (len(train), 4)
    assert train.videos.get(train.records[0].vid) is train.videos.get(train.records[0].vid)


def test_non_strict_annotations_skip_bad_rows(tmp_path: Path, qvh: DataConfig) -> None:
    good = _row(1, "v150", 150, [[10, 20]], relevant_clip_ids=[5], saliency_scores=[[1, 1, 1]])
    bad = {**good, "qid": 2, "relevant_windows": [[30, 20]]}
    qvh.val = _write_jsonl(tmp_path / "mixed.jsonl", [good, bad])
    with pytest.raises(SidetuneError, match=r"mixed\.jsonl:2"):
        GroundingDataset(qvh, "val")
    qvh.strict = False
    ds = GroundingDataset(qvh, "val")
    assert [r.qid for r in ds.records] == [1] and len(ds.skipped) == 1
