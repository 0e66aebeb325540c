"""Sliding windows over long videos: window layout, saliency averaging, the minute-47 event."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from sidetune.grounding.data import collate_grounding
from sidetune.grounding.predictor import GroundingPredictor, _rows_windowed, predict_long
from sidetune.grounding.runs import load_grounding_config
from sidetune.grounding.span_utils import temporal_iou
from sidetune.grounding.windows import average_saliency, resolve_stride, window_starts

CLIP = 2.0


def test_window_starts_cover_every_clip_with_full_windows() -> None:
    assert window_starts(50, 75, 37) == [0]
    assert window_starts(75, 75, 37) == [0]
    starts = window_starts(200, 75, 37)
    assert starts == [0, 37, 74, 111, 125]  # the last one ends exactly at clip 200
    covered = np.zeros(200, bool)
    for s in starts:
        covered[s : s + 75] = True
    assert covered.all()
    assert resolve_stride(75, None) == 37 and resolve_stride(1, None) == 1
    with pytest.raises(Exception, match="stride"):
        resolve_stride(75, 80)


def test_saliency_is_the_mean_over_covering_windows() -> None:
    per_window = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 3.0, 3.0, 3.0], [5.0, 5.0, 5.0, 5.0]])
    out = average_saliency(per_window, [0, 2, 4], 8)
    assert out.tolist() == [1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 5.0, 5.0]


class MatchModel(nn.Module):
    """A stand-in for SDST with its output interface: clips whose last-layer feature matches the
    query's mean token are salient, and query 0 spans the longest run of them (relative to the
    window it is given). Lets the test check the window mapping and merging exactly."""

    def __init__(self, num_queries: int = 4) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.m = num_queries

    def forward(self, video: torch.Tensor, video_mask: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor) -> dict[str, Any]:  # fmt: skip
        b, _, t, _ = video.shape
        q = (text[:, -1] * text_mask[..., None]).sum(1) / text_mask.sum(1, keepdim=True)
        sim = torch.cosine_similarity(video[:, -1], q[:, None], dim=-1) * video_mask  # (B, T)
        spans = torch.full((b, self.m, 2), 0.5)
        spans[..., 1] = 0.2
        logits = torch.full((b, self.m), -6.0)
        for i in range(b):
            on = (sim[i] > 0.5).nonzero().flatten()
            if on.numel():
                s, e = int(on.min()), int(on.max()) + 1
                spans[i, 0] = torch.tensor([(s + e) / 2 / t, (e - s) / t])
                logits[i, 0] = 6.0 * (e - s) / (e - s + 1)  # a cut event scores lower
        return {"pred_logits": logits, "pred_spans": spans,
                "pred_actionness": torch.ones(b, self.m), "saliency": sim}  # fmt: skip


def _hour_with_event(seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """60 min of 2-s clips ([K=4, 1800, 64] noise) and an event at 47:00-47:20 + its query."""
    rng = np.random.default_rng(seed)
    video = rng.standard_normal((4, 1800, 64)).astype(np.float32)
    code = rng.standard_normal(64).astype(np.float32)
    start, end = 47 * 60.0, 47 * 60.0 + 20.0
    video[:, int(start / CLIP) : int(end / CLIP)] = 3.0 * code
    query = np.repeat((3.0 * code)[None, None], 4, axis=0) + 0.01  # [K, L=1, F]
    return video, query, (start, end)


def _predictor(long_video: str) -> GroundingPredictor:
    cfg = load_grounding_config(
        "sdst_rendered",
        ["model.num_levels=4", f"data.long_video={long_video}", "data.max_clips=75"],
    )
    return GroundingPredictor(MatchModel(), cfg)


def test_minute_47_of_60_is_found_by_windows_and_lost_by_pooling() -> None:
    video, query, (start, end) = _hour_with_event()
    row = _predictor("window").predict(video, query, duration=3600.0)
    assert len(row["pred_saliency_scores"]) == 1800  # the whole hour, clip by clip
    top = row["pred_relevant_windows"][0]
    iou = temporal_iou(torch.tensor([[top[:2]]]), torch.tensor([[[start, end]]])).item()
    assert top[0] <= start + CLIP and top[1] >= end - CLIP and iou > 0.8, top
    sal = np.asarray(row["pred_saliency_scores"])
    assert sal.argmax() * CLIP >= start and sal.argmax() * CLIP < end
    # The same model on the pooled hour (75 bins of 48 s) cannot place the boundaries.
    pooled = _predictor("pool").predict(video, query, duration=3600.0)
    p = pooled["pred_relevant_windows"][0]
    iou_pool = temporal_iou(torch.tensor([[p[:2]]]), torch.tensor([[[start, end]]])).item()
    assert iou_pool < 0.5 and len(pooled["pred_saliency_scores"]) == 75


def test_an_event_seen_by_two_windows_is_reported_once() -> None:
    video, query, (start, end) = _hour_with_event(1)
    row = predict_long(
        MatchModel(), torch.from_numpy(video), torch.from_numpy(query),
        {"qid": 0, "vid": "v", "query": "q", "duration": 3600.0, "clip_length": CLIP},
        _predictor("window").cfg.post, window=75, stride=37,
    )  # fmt: skip
    wins = np.asarray(row["pred_relevant_windows"])
    near = wins[(wins[:, 0] < end) & (wins[:, 1] > start)]
    # Soft-NMS decays the duplicate from the overlapping window below the original.
    assert near[0, 2] == wins[:, 2].max() and (near[1:, 2] < 0.5 * near[0, 2]).all()


def test_batches_mix_short_videos_and_windowed_long_ones() -> None:
    pred = _predictor("window")
    video, query, _ = _hour_with_event(2)
    short = video[:, :40]
    samples = []
    for i, v in enumerate((short, video)):
        from sidetune.grounding.predictor import prepare_sample

        samples.append(prepare_sample(pred.cfg.data, 4, v, query, CLIP, None,
                                      {"qid": i, "vid": str(i), "query": "q"}))  # fmt: skip
    batch = collate_grounding(samples)
    rows = _rows_windowed(pred.model, batch, pred.cfg.post, 75, 37)
    assert [len(r["pred_saliency_scores"]) for r in rows] == [40, 1800]
    assert rows[1] == pred.predict(video, query, qid=1, vid="1", query="q")
    assert (
        rows[0]["pred_relevant_windows"]
        == pred.predict(short, query, qid=0, vid="0", query="q")["pred_relevant_windows"]
    )
