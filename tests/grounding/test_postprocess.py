from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch

from sidetune.config import ConfigError
from sidetune.grounding.postprocess import (
    PostprocessConfig,
    PostprocessError,
    confidence,
    postprocess,
    soft_nms,
)

# Hand-worked example: window 1 overlaps window 0 with IoU 8/10; window 2 is disjoint.
WINDOWS = torch.tensor([[[0.0, 10.0], [0.0, 8.0], [20.0, 30.0]]])
SCORES = torch.tensor([[0.9, 0.8, 0.7]])


def test_gaussian_soft_nms_hand_example() -> None:
    order, kept = soft_nms(WINDOWS, SCORES, top_k=10, method="gaussian", sigma=0.5)
    assert order.tolist() == [[0, 2, 1]]
    # window 1 decays to 0.8 * exp(-0.8^2 / 0.5) after window 0 is picked; window 2 is untouched
    want = [0.9, 0.7, 0.8 * math.exp(-0.64 / 0.5)]
    assert kept[0].tolist() == pytest.approx(want, rel=1e-6)


def test_linear_and_hard_nms_hand_example() -> None:
    order, kept = soft_nms(WINDOWS, SCORES, top_k=3, method="linear", iou_threshold=0.3)
    assert order.tolist() == [[0, 2, 1]]
    assert kept[0].tolist() == pytest.approx([0.9, 0.7, 0.8 * (1 - 0.8)], rel=1e-6)
    order, kept = soft_nms(WINDOWS, SCORES, top_k=3, method="hard", iou_threshold=0.5)
    assert order[0, :2].tolist() == [0, 2]
    assert kept[0, :2].tolist() == pytest.approx([0.9, 0.7]) and kept[0, 2] == -math.inf
    order, kept = soft_nms(WINDOWS, SCORES, top_k=2, method="none")
    assert order.tolist() == [[0, 1]]


def test_soft_nms_decay_chain_and_batch_independence() -> None:
    # Three nested windows: each pick decays the rest; scores come out non-increasing.
    windows = torch.tensor([[[0.0, 10.0], [1.0, 10.0], [2.0, 10.0], [50.0, 60.0]]])
    scores = torch.tensor([[0.95, 0.9, 0.85, 0.3]])
    order, kept = soft_nms(windows, scores, top_k=4, sigma=0.5)
    assert (kept[0, 1:] <= kept[0, :-1]).all()
    assert kept[0, 1] < 0.9  # the runner-up overlapping window lost score
    other_w = torch.tensor([[[0.0, 10.0], [0.0, 8.0], [20.0, 30.0], [40.0, 41.0]]])
    other_s = torch.tensor([[0.9, 0.8, 0.7, 0.01]])
    b_order, b_kept = soft_nms(torch.cat((windows, other_w)), torch.cat((scores, other_s)), 4)
    s_order, s_kept = soft_nms(other_w, other_s, top_k=4)
    assert torch.equal(b_order[0], order[0]) and torch.allclose(b_kept[0], kept[0])
    assert torch.equal(b_order[1], s_order[0]) and torch.allclose(b_kept[1], s_kept[0])


def test_confidence_is_eq_23() -> None:
    logits = torch.tensor([[0.0, 2.0]])
    act = torch.tensor([[0.64, 1.5]])  # actionness above 1 is clamped
    want = [math.sqrt(0.5 * 0.64), math.sqrt(1 / (1 + math.exp(-2.0)))]
    assert confidence(logits, act)[0].tolist() == pytest.approx(want, rel=1e-6)
    assert confidence(logits, None)[0].tolist() == pytest.approx([0.5, 1 / (1 + math.exp(-2))])


def _outputs(batch: int = 2, queries: int = 30, clips: int = 75) -> dict[str, Any]:
    return {
        "pred_logits": torch.randn(batch, queries),
        "pred_spans": torch.stack(
            (torch.rand(batch, queries), 0.02 + 0.4 * torch.rand(batch, queries)), -1
        ),
        "pred_actionness": torch.rand(batch, queries),
        "saliency": torch.randn(batch, clips),
    }


def _metas() -> list[dict[str, Any]]:
    return [
        {"qid": 7, "vid": "a_60.0_210.0", "query": "q one", "duration": 150.0,
         "num_clips": 75, "clip_length": 2.0},
        {"qid": "x9", "vid": "b", "query": "q two", "duration": 31.0,
         "num_clips": 16, "clip_length": 2.0},
    ]  # fmt: skip


def test_postprocess_rows_format_seconds_and_clamping() -> None:
    outputs = _outputs()
    # Query 0 of sample 1 runs past the video's end, query 1 lies entirely beyond it.
    outputs["pred_spans"][1, 0] = torch.tensor([0.9, 0.3])
    outputs["pred_spans"][1, 1] = torch.tensor([0.995, 0.005])
    outputs["pred_logits"][1, :2] = 10.0
    outputs["pred_actionness"][1, :2] = 1.0
    outputs["pred_logits"][1, 2:] = -1.0  # every other query: confidence < sqrt(0.27)
    rows = postprocess(outputs, _metas(), PostprocessConfig())
    json.dumps(rows)  # plain Python types only
    for row, meta in zip(rows, _metas()):
        assert list(row) == ["qid", "query", "vid", "pred_relevant_windows", "pred_saliency_scores"]
        assert row["qid"] == meta["qid"] and row["vid"] == meta["vid"]
        windows = row["pred_relevant_windows"]
        assert 0 < len(windows) <= 10
        assert all(0.0 <= s < e <= meta["duration"] for s, e, _ in windows)
        scores = [c for _, _, c in windows]
        assert scores == sorted(scores, reverse=True)
        assert len(row["pred_saliency_scores"]) == meta["num_clips"]
        assert all(round(v, 4) == v for w in windows for v in w)
    # 32 s timeline, span [0.75, 1.05] -> [24, 33.6] s, clamped to the 31 s duration.
    assert rows[1]["pred_relevant_windows"][0][:2] == [24.0, 31.0]
    # [0.9925, 0.9975] * 32 s = [31.76, 31.92] s starts after the end: dropped, although its
    # confidence (~1, no overlap with the first window) would otherwise rank it second.
    assert rows[1]["pred_relevant_windows"][1][2] < 0.6
    assert rows[1]["pred_saliency_scores"] == [
        round(v, 4) for v in outputs["saliency"][1, :16].tolist()
    ]


def test_postprocess_top_k_and_score_threshold() -> None:
    outputs = _outputs()
    rows = postprocess(outputs, _metas(), PostprocessConfig(top_k=3))
    assert all(len(r["pred_relevant_windows"]) == 3 for r in rows)
    rows = postprocess(outputs, _metas(), PostprocessConfig(score_threshold=2.0))
    assert all(r["pred_relevant_windows"] == [] for r in rows)


def test_postprocess_errors() -> None:
    outputs = _outputs()
    with pytest.raises(PostprocessError, match="lacks"):
        postprocess(outputs, [{"qid": 1}, _metas()[1]])
    bad = _metas()
    bad[0]["num_clips"] = 80
    with pytest.raises(PostprocessError, match="num_clips"):
        postprocess(outputs, bad)
    del outputs["pred_actionness"]
    with pytest.raises(PostprocessError, match="use_actionness"):
        postprocess(outputs, _metas())
    rows = postprocess(outputs, _metas(), PostprocessConfig(use_actionness=False))
    assert len(rows) == 2
    with pytest.raises(ConfigError, match="sigma"):
        PostprocessConfig(sigma=0.0)
