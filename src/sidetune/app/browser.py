"""The prediction browser's data: metrics, one row per query, one query's detail.

The metrics are computed exactly as ``sidetune evaluate`` does (same readers, same checks,
same :func:`~sidetune.grounding.metrics.evaluate_predictions`), so the page shows the same
numbers and, for a bad file, the same ``file:line: field ...`` message.

Per-query columns (``QueryRow``):

* ``top1_iou``: IoU of the *first* predicted window (file order, as the official R1 takes it)
  with the GT window it overlaps most;
* ``best_iou``: the highest IoU of any of the first 10 predicted windows (those the mAP counts)
  with any GT window;
* ``buckets``: the official length buckets (short / middle / long) of the query's GT windows;
* ``kind@0.5`` / ``kind@0.7``: why the top-1 window misses at that IoU, see :func:`failure_kind`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidetune.grounding.annotations import CLIP_LENGTH, GroundingRecord, load_annotations
from sidetune.grounding.metrics import LENGTH_BUCKETS, MAX_PRED_WINDOWS, evaluate_predictions
from sidetune.grounding.predictions import match_qids, read_predictions

FAILURE_THRESHOLDS: tuple[float, ...] = (0.5, 0.7)
FAILURE_KINDS: tuple[str, ...] = ("hit", "no overlap", "too short", "too long", "shifted", "none")
OVER_BUCKETS = "over 150 s"  # GT windows longer than the official buckets' 150 s

Window = Sequence[float]


def iou(a: Window, b: Window) -> float:
    """Temporal IoU of two ``[start, end, ...]`` windows (0 for an empty union)."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def best_gt(pred: Window, gts: Sequence[Window]) -> tuple[int, float]:
    """Index of the GT window ``pred`` overlaps most (first on ties) and that IoU."""
    ious = [iou(pred, g) for g in gts]
    k = max(range(len(ious)), key=ious.__getitem__)
    return k, ious[k]


def failure_kind(pred: Window | None, gts: Sequence[Window], threshold: float) -> str:
    """Why a top-1 window misses the GT at IoU ``threshold``.

    ``hit``: IoU >= threshold. ``no overlap``: IoU 0 with every GT window. Otherwise take the
    GT window g it overlaps most and the length ratio r = len(pred) / len(g): a window of that
    length can reach at most IoU min(r, 1/r) wherever it is placed, so ``too short`` when
    r < threshold, ``too long`` when 1/r < threshold, and ``shifted`` when the length would
    allow a hit but the placement does not. ``none``: no predicted window.
    """
    if pred is None:
        return "none"
    k, value = best_gt(pred, gts)
    if value >= threshold:
        return "hit"
    if value <= 0.0:
        return "no overlap"
    pred_len, gt_len = pred[1] - pred[0], gts[k][1] - gts[k][0]
    if pred_len < threshold * gt_len:
        return "too short"
    if gt_len < threshold * pred_len:
        return "too long"
    return "shifted"


def length_buckets(gts: Sequence[Window]) -> list[str]:
    """Official length buckets, in order, that hold at least one of these GT windows."""
    lengths = [g[1] - g[0] for g in gts]
    names = [n for n, (lo, hi) in LENGTH_BUCKETS.items() if any(lo < x <= hi for x in lengths)]
    if any(x > max(hi for _, hi in LENGTH_BUCKETS.values()) for x in lengths):
        names.append(OVER_BUCKETS)
    return names


def query_row(pred: dict[str, Any], gt: GroundingRecord) -> dict[str, Any]:
    """The list view's row of one query (JSON-able)."""
    windows = pred["pred_relevant_windows"]
    counted = windows[:MAX_PRED_WINDOWS]
    top1 = windows[0] if windows else None
    row: dict[str, Any] = {
        "qid": gt.qid,
        "vid": gt.vid,
        "query": gt.query,
        "duration": gt.duration,
        "num_gt": len(gt.windows),
        "num_pred": len(windows),
        "buckets": length_buckets(gt.windows),
        "top1_iou": round(best_gt(top1, gt.windows)[1], 4) if top1 is not None else 0.0,
        "best_iou": round(max((iou(w, g) for w in counted for g in gt.windows), default=0.0), 4),
    }
    for t in FAILURE_THRESHOLDS:
        row[f"kind@{t}"] = failure_kind(top1, gt.windows, t)
    return row


def gt_saliency(gt: GroundingRecord, clip_len: float) -> list[float] | None:
    """Per-clip mean of the annotators' saliency (0 off the relevant clips), or None."""
    if gt.relevant_clip_ids is None or gt.saliency_scores is None:
        return None
    curve = [0.0] * math.ceil(gt.duration / clip_len - 1e-9)
    for clip, scores in zip(gt.relevant_clip_ids, gt.saliency_scores):
        curve[clip] = sum(scores) / len(scores)
    return curve


@dataclass
class BrowserData:
    """A loaded predictions file against its ground truth."""

    dataset: str
    pred_path: Path
    gt_path: Path
    metrics: dict[str, Any]
    rows: list[dict[str, Any]]
    predictions: dict[Any, dict[str, Any]] = field(repr=False)
    ground_truth: dict[Any, GroundingRecord] = field(repr=False)
    load_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-able; a metric that is NaN (e.g. an empty length bucket) becomes None."""
        return {
            "dataset": self.dataset,
            "pred": str(self.pred_path),
            "gt": str(self.gt_path),
            "num_queries": len(self.rows),
            "metrics": _finite_or_none(self.metrics),
            "has_saliency": any("pred_saliency_scores" in p for p in self.predictions.values()),
            "load_seconds": round(self.load_seconds, 3),
        }

    def detail(self, qid: Any) -> dict[str, Any]:
        """One query's page: GT and predicted windows with IoUs, both saliency curves."""
        pred, gt = self.predictions[qid], self.ground_truth[qid]
        clip_len = CLIP_LENGTH[self.dataset]
        windows = []
        for rank, w in enumerate(pred["pred_relevant_windows"]):
            k, value = best_gt(w, gt.windows)
            windows.append(
                {
                    "start": w[0],
                    "end": w[1],
                    "score": w[2],
                    "rank": rank + 1,
                    "counted": rank < MAX_PRED_WINDOWS,
                    "iou": round(value, 4),
                    "gt_index": k,
                }
            )
        row = next(r for r in self.rows if r["qid"] == qid)
        return {
            **row,
            "clip_len": clip_len,
            "gt_windows": [list(w) for w in gt.windows],
            "pred_windows": windows,
            "pred_saliency": pred.get("pred_saliency_scores"),
            "gt_saliency": gt_saliency(gt, clip_len),
        }


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def parse_qid(text: str, known: dict[Any, Any]) -> Any:
    """A qid from a URL: int when the file's qids are ints, else the string; KeyError if unknown."""
    if text in known:
        return text
    if text.lstrip("-").isdigit() and int(text) in known:
        return int(text)
    raise KeyError(text)


def load_browser(
    pred_path: str | os.PathLike[str], gt_path: str | os.PathLike[str], dataset: str
) -> BrowserData:
    """Read, check and score like ``sidetune evaluate``; raises its ``SidetuneError`` messages."""
    start = time.perf_counter()
    ground_truth = load_annotations(gt_path, dataset, strict=True)
    predictions = read_predictions(pred_path)
    match_qids(
        (p["qid"] for p in predictions),
        (r.qid for r in ground_truth),
        pred_name=str(pred_path),
        gt_name=str(gt_path),
    )
    metrics = evaluate_predictions(predictions, ground_truth.records, dataset, validate=False)
    gt_by_qid = ground_truth.by_qid()
    rows = [query_row(p, gt_by_qid[p["qid"]]) for p in predictions]
    return BrowserData(
        dataset=dataset,
        pred_path=Path(pred_path),
        gt_path=Path(gt_path),
        metrics=metrics,
        rows=rows,
        predictions={p["qid"]: p for p in predictions},
        ground_truth=gt_by_qid,
        load_seconds=time.perf_counter() - start,
    )
