"""Temporal-grounding metrics: the official QVHighlights evaluator, re-implemented vectorized.

QVHighlights (layout and values of Moment-DETR's ``standalone_eval``)::

    {"brief": {"MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-full-mAP@0.5",
               "MR-full-mAP@0.75", "MR-long-mAP", "MR-middle-mAP", "MR-short-mAP",
               "HL-min-Fair-mAP", "HL-min-Fair-Hit1", ..., "HL-min-VeryGood-Hit1"},
     "HL-min-Fair": {"HL-mAP", "HL-Hit1"}, "HL-min-Good": ..., "HL-min-VeryGood": ...,
     "full" | "long" | "middle" | "short": {"MR-mAP": {"0.5", ..., "0.95", "average"},
                                            "MR-R1": {"0.5", ..., "0.95"}}}

Charades-STA / TACoS::

    {"brief": {"R1@0.3", "R1@0.5", "R1@0.7", "R5@0.3", "R5@0.5", "R5@0.7", "mIoU"},
     "full": {"R1": {"0.3", "0.5", "0.7"}, "R5": {...}, "mIoU": float}}

All values are percentages rounded to 2 decimals.

Semantics that decide exact equality with the official numbers:

* MR mAP: per query, the first 10 windows *in file order* are kept, then sorted by score
  (stable: equal scores keep file order). Each prediction greedily takes the unmatched GT window
  of highest IoU if that IoU >= threshold (equal IoUs: the later GT window). AP is the
  ActivityNet interpolated AP (continuous, not 101-point); mAP is the mean over queries, and
  ``average`` the mean over the 10 thresholds 0.5:0.05:0.95.
* MR R1: the *first* window in file order against the GT window it overlaps most; the IoU test
  uses ``inter / (max(end) - min(start))``, which equals the IoU whenever they overlap.
* Length buckets short (0, 10], middle (10, 30], long (30, 150] seconds keep each query's GT
  windows whose length falls in the bucket, and the queries left with at least one; ``full``
  keeps everything.
* HD: GT saliency per annotator on ``int(duration / 2)`` clips (0 off the relevant clips),
  binarized at >= 2 / 3 / 4. Predicted clip scores are truncated / zero-padded to that length.
  mAP: per (query, annotator) the AP of ``sklearn``'s precision-recall curve with interpolated
  precision averaged over the distinct recall levels (tied scores form one level); an annotator
  with no positive clip scores 0, one with only positive clips 1; mean over queries and
  annotators. Hit@1: the argmax clip of the untruncated scores is a hit if any annotator marks
  it positive.
* Sums follow numpy's pairwise summation order, so per-query values are bit-identical to the
  official code's.

Decisions where the official code has no answer (it crashes or is undefined):
* predictions and GT must hold the same qids (error listing missing / extra qids);
* a query with no predicted window scores AP 0 and R1 0 (the official evaluator crashes);
* HD runs iff predictions carry ``pred_saliency_scores``: when no row has them HD is skipped
  (the output has only the MR keys, as the official evaluator does); when only some rows have
  them, or the GT has no saliency annotation, :class:`MetricsError` is raised;
* GT records without windows (test files without annotations) cannot be scored: error;
* a zero-length window (prediction or GT) has IoU 0 with everything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sidetune.errors import SidetuneError
from sidetune.grounding.annotations import CLIP_LENGTH, GroundingRecord, check_dataset
from sidetune.grounding.predictions import match_qids, validate_predictions

MR_IOU_THRESHOLDS: tuple[float, ...] = tuple(float(f"{x:.2f}") for x in np.linspace(0.5, 0.95, 10))
MAX_PRED_WINDOWS: int = 10
# (lo, hi]: GT window length in seconds.
LENGTH_BUCKETS: dict[str, tuple[float, float]] = {
    "short": (0.0, 10.0),
    "middle": (10.0, 30.0),
    "long": (30.0, 150.0),
}
HD_MIN_SCORES: dict[str, int] = {"Fair": 2, "Good": 3, "VeryGood": 4}
RECALL_IOU_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
RECALL_TOP_K: tuple[int, ...] = (1, 5)

BriefDict = dict[str, float]
_PAIRWISE_BLOCK = 128  # numpy's pairwise-summation block


class MetricsError(SidetuneError, ValueError):
    """Predictions / ground truth that cannot be scored; the message names the qid and field."""


def _pct(x: float) -> float:
    """Percentage rounded to 2 decimals, formatted exactly as the official evaluator does."""
    return float(f"{100 * x:.2f}")


# ----------------------------------------------------------------------------------------------
# IoU
# ----------------------------------------------------------------------------------------------


def iou_cross(
    a_start: np.ndarray, a_end: np.ndarray, b_start: np.ndarray, b_end: np.ndarray
) -> np.ndarray:
    """Temporal IoU of broadcast span arrays (seconds); 0 where the union is empty."""
    inter = np.clip(np.minimum(a_end, b_end) - np.maximum(a_start, b_start), 0, None)
    union = (a_end - a_start) + (b_end - b_start) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _iou_hull(
    a_start: np.ndarray, a_end: np.ndarray, b_start: np.ndarray, b_end: np.ndarray
) -> np.ndarray:
    # The official R1 divides by the hull (max end - min start): equal to the union whenever the
    # spans overlap, and rounding-identical to its float arithmetic.
    inter = np.maximum(0, np.minimum(a_end, b_end) - np.maximum(a_start, b_start))
    hull = np.maximum(a_end, b_end) - np.minimum(a_start, b_start)
    return np.divide(inter, hull, out=np.zeros_like(inter), where=hull != 0)


def temporal_iou(spans_a: np.ndarray, spans_b: np.ndarray) -> np.ndarray:
    """IoU matrix of ``(N, 2)`` and ``(M, 2)`` ``[start, end]`` spans -> ``(N, M)``."""
    a = np.asarray(spans_a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(spans_b, dtype=np.float64).reshape(-1, 2)
    return iou_cross(a[:, None, 0], a[:, None, 1], b[None, :, 0], b[None, :, 1])


# ----------------------------------------------------------------------------------------------
# Packing ragged per-query lists into padded arrays
# ----------------------------------------------------------------------------------------------


def _pack(
    lists: Sequence[Sequence[Any]], width: int | None, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ragged lists -> padded ``(Q, P[, width])`` float64 array, ``(Q, P)`` valid mask, counts."""
    counts = np.fromiter(
        (len(x) if limit is None else min(len(x), limit) for x in lists), np.int64, len(lists)
    )
    flat = [v for x, n in zip(lists, counts) for v in x[:n]]
    shape: tuple[int, ...] = (-1,) if width is None else (-1, width)
    values = np.asarray(flat, dtype=np.float64).reshape(shape)
    q, p = len(lists), max(int(counts.max(initial=0)), 1)
    rows = np.repeat(np.arange(q), counts)
    cols = np.arange(len(values)) - np.repeat(np.cumsum(counts) - counts, counts)
    out = np.zeros((q, p, *values.shape[1:]), dtype=np.float64)
    out[rows, cols] = values
    valid = np.zeros((q, p), dtype=bool)
    valid[rows, cols] = True
    return out, valid, counts


def _compact(values: np.ndarray, keep: np.ndarray, reverse: bool = False) -> np.ndarray:
    """Move the kept entries of each (R, N) row to the front (in order, or reversed); zeros after."""
    rank = np.cumsum(keep[:, ::-1] if reverse else keep, axis=-1) - 1
    if reverse:
        rank = rank[:, ::-1]
    out = np.zeros(values.shape, dtype=np.float64)
    rows = np.broadcast_to(np.arange(len(values))[:, None], values.shape)
    out[rows[keep], rank[keep]] = values[keep]
    return out


def _numpy_sum(terms: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Row sums of the first ``counts`` entries, added in the order ``np.sum`` uses on a 1-D
    array of that length: sequential below 8 items, else 8 interleaved partial sums joined as a
    tree, then the tail. Rows must be zero beyond ``counts``.

    The official evaluator sums (and averages) short per-query arrays with numpy; emulating
    its association order makes our per-query values bit-identical to its values. Rows longer
    than numpy's 128-item block (never in QVHighlights: 75 clips at most) call ``np.sum``.
    """
    rows, length = terms.shape
    width = min(length, _PAIRWISE_BLOCK)
    blocks = width // 8 + 1
    padded = np.zeros((rows, blocks * 8 + 8))
    padded[:, :width] = terms[:, :width]
    full = counts // 8  # blocks summed into the 8 partial sums
    acc = padded[:, :8].copy()
    for b in range(1, blocks):
        acc = np.where((b < full)[:, None], acc + padded[:, 8 * b : 8 * b + 8], acc)
    tree = ((acc[:, 0] + acc[:, 1]) + (acc[:, 2] + acc[:, 3])) + (
        (acc[:, 4] + acc[:, 5]) + (acc[:, 6] + acc[:, 7])
    )
    res = np.where(full > 0, tree, 0.0)
    start = 8 * full
    for k in range(8):  # tail (the whole row when shorter than 8), added one by one
        idx = np.minimum(start + k, padded.shape[1] - 1)
        val = padded[np.arange(rows), idx]
        res = np.where(k < counts - start, res + val, res)
    for i in np.flatnonzero(counts > _PAIRWISE_BLOCK):  # numpy recurses; rare, so call it
        res[i] = np.sum(terms[i, : counts[i]])
    return res


# ----------------------------------------------------------------------------------------------
# Moment retrieval (QVHighlights)
# ----------------------------------------------------------------------------------------------


def _greedy_match(iou: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Sequential greedy matching of ranked predictions to GT windows.

    iou: (Q, P, G) IoU of score-ranked predictions with GT windows; ``-inf`` for padding.
    Returns tp: (Q, T, P) bool. Prediction k takes the still-free GT window of highest IoU if
    that IoU >= threshold; equal IoUs go to the later window (the official evaluator visits
    ``argsort()[::-1]``). The loop runs over the <= 10 ranks only; queries and thresholds are
    vectorized.
    """
    q, p, g = iou.shape
    thr = thresholds[None, :, None]  # (1, T, 1)
    locked = np.zeros((q, len(thresholds), g), dtype=bool)
    tp = np.zeros((q, len(thresholds), p), dtype=bool)
    gidx = np.arange(g)
    for k in range(p):
        iou_k = iou[:, None, k, :]  # (Q, 1, G)
        cand = (iou_k >= thr) & ~locked  # (Q, T, G)
        best = np.where(cand, iou_k, -np.inf).max(axis=-1, keepdims=True)
        pick = cand & (iou_k == best)
        last: np.ndarray = g - 1 - np.argmax(pick[..., ::-1], axis=-1)  # (Q, T)
        hit = np.any(cand, axis=-1)
        tp[:, :, k] = hit
        locked |= (gidx == last[..., None]) & hit[..., None]
    return tp


def _mr_average_precision(
    pred: np.ndarray,
    pred_valid: np.ndarray,
    gt: np.ndarray,
    gt_valid: np.ndarray,
    thresholds: Sequence[float],
) -> np.ndarray:
    """Per-query interpolated AP at each IoU threshold.

    pred: (Q, P, 3) ``[start, end, score]`` (already truncated to 10), pred_valid: (Q, P);
    gt: (Q, G, 2), gt_valid: (Q, G) with at least one valid window per query. Returns (Q, T).
    """
    key = np.where(pred_valid, -pred[..., 2], np.inf)
    order = np.argsort(key, axis=1, kind="stable")  # equal scores keep file order
    ranked = np.take_along_axis(pred, order[..., None], axis=1)
    valid = np.take_along_axis(pred_valid, order, axis=1)
    iou = iou_cross(
        ranked[:, :, None, 0], ranked[:, :, None, 1], gt[:, None, :, 0], gt[:, None, :, 1]
    )
    iou = np.where(valid[:, :, None] & gt_valid[:, None, :], iou, -np.inf)
    thr = np.asarray(thresholds, dtype=np.float64)
    # Only GT windows some prediction can match take part in the greedy matching; dropping the
    # rest (keeping the order of those left) leaves every match unchanged and shrinks G.
    useful = (iou >= thr.min()).any(axis=1)  # (Q, G)
    width = max(int(useful.sum(axis=1).max(initial=0)), 1)
    gcols = np.argsort(~useful, axis=1, kind="stable")[:, :width]
    iou_used = np.take_along_axis(iou, gcols[:, None, :], axis=2)
    iou_used = np.where(np.take_along_axis(useful, gcols, axis=1)[:, None, :], iou_used, -np.inf)
    tp = _greedy_match(iou_used, thr)  # (Q, T, P)
    fp = valid[:, None, :] & ~tp
    tp_cum = np.cumsum(tp, axis=-1).astype(np.float64)
    fp_cum = np.cumsum(fp, axis=-1).astype(np.float64)
    num_gt = gt_valid.sum(axis=1).astype(np.float64)[:, None, None]
    recall = tp_cum / num_gt
    seen = tp_cum + fp_cum
    precision = np.divide(tp_cum, seen, out=np.zeros_like(tp_cum), where=seen > 0)
    # ActivityNet interpolation: precision envelope, area over the recall steps.
    shape = (*recall.shape[:-1], 1)
    m_rec = np.concatenate([np.zeros(shape), recall, np.ones(shape)], axis=-1)
    m_prec = np.concatenate([np.zeros(shape), precision, np.zeros(shape)], axis=-1)
    m_prec = np.maximum.accumulate(m_prec[..., ::-1], axis=-1)[..., ::-1]
    steps = m_rec[..., 1:] != m_rec[..., :-1]
    terms = (m_rec[..., 1:] - m_rec[..., :-1]) * m_prec[..., 1:]
    flat_terms = _compact(terms.reshape(-1, terms.shape[-1]), steps.reshape(-1, steps.shape[-1]))
    ap = _numpy_sum(flat_terms, steps.reshape(-1, steps.shape[-1]).sum(axis=-1))
    return ap.reshape(tp.shape[:2])


def _mr_recall_at_one(
    top1: np.ndarray, gt: np.ndarray, gt_valid: np.ndarray, thresholds: Sequence[float]
) -> dict[str, float]:
    """R1: the first predicted window against the GT window it overlaps most. top1: (Q, 2)."""
    iou = iou_cross(top1[:, None, 0], top1[:, None, 1], gt[..., 0], gt[..., 1])
    best = np.argmax(np.where(gt_valid, iou, -np.inf), axis=1)
    chosen = gt[np.arange(len(gt)), best]
    paired = _iou_hull(top1[:, 0], top1[:, 1], chosen[:, 0], chosen[:, 1])
    return {str(t): float(f"{np.mean(paired >= t) * 100:.2f}") for t in thresholds}


def moment_retrieval_metrics(
    pred_windows: Sequence[Sequence[Sequence[float]]],
    gt_windows: Sequence[Sequence[Sequence[float]]],
) -> dict[str, dict[str, dict[str, float]]]:
    """QVHighlights MR metrics per length bucket: ``{bucket: {"MR-mAP": ..., "MR-R1": ...}}``.

    pred_windows[i]: query i's ``[start, end, score]`` list (best first);
    gt_windows[i]: its non-empty list of ``[start, end]`` GT windows.
    """
    preds, pred_valid, counts = _pack(pred_windows, 3, limit=MAX_PRED_WINDOWS)
    gt, gt_valid, _ = _pack(gt_windows, 2)
    top1 = np.where(counts[:, None] > 0, preds[:, 0, :2], np.nan)  # no window: never a hit
    length = gt[..., 1] - gt[..., 0]
    buckets: dict[str, np.ndarray] = {"full": gt_valid}
    for name, (lo, hi) in LENGTH_BUCKETS.items():
        buckets[name] = gt_valid & (length > lo) & (length <= hi)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in ("short", "middle", "long", "full"):
        mask = buckets[name]
        rows = mask.any(axis=1)
        if not rows.any():
            nan_map = {str(t): float("nan") for t in MR_IOU_THRESHOLDS}
            out[name] = {"MR-mAP": {**nan_map, "average": float("nan")}, "MR-R1": dict(nan_map)}
            continue
        ap = _mr_average_precision(
            preds[rows], pred_valid[rows], gt[rows], mask[rows], MR_IOU_THRESHOLDS
        )
        ap_thds = ap.mean(axis=0)
        mr_map = {str(t): v for t, v in zip(MR_IOU_THRESHOLDS, ap_thds)}
        mr_map["average"] = np.mean(ap_thds)
        out[name] = {
            "MR-mAP": {k: _pct(v) for k, v in mr_map.items()},
            "MR-R1": _mr_recall_at_one(top1[rows], gt[rows], mask[rows], MR_IOU_THRESHOLDS),
        }
    return out


# ----------------------------------------------------------------------------------------------
# Highlight detection (QVHighlights)
# ----------------------------------------------------------------------------------------------


def _saliency_ap(scores: np.ndarray, valid: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AP of ranking clips by score, per (query, annotator).

    scores: (Q, C) clip scores; valid: (Q, C) clip exists; labels: (Q, A, C) binary GT.
    Precision-recall points are taken at each distinct score (ties form one point); the
    interpolated precision (max over lower thresholds) is averaged over the points where the
    recall grows. Returns (Q, A).
    """
    q, c = scores.shape
    order = np.argsort(np.where(valid, -scores, np.inf), axis=1, kind="stable")
    s = np.take_along_axis(scores, order, axis=1)
    v = np.take_along_axis(valid, order, axis=1)
    y = np.take_along_axis(labels, order[:, None, :], axis=2)
    y = np.where(v[:, None, :], y, 0.0)
    nxt_differs = np.ones((q, c), dtype=bool)
    nxt_differs[:, :-1] = (s[:, 1:] != s[:, :-1]) | ~v[:, 1:]
    group_end = v & nxt_differs  # (Q, C): last clip of each tie group
    tp_cum = np.cumsum(y, axis=-1)  # (Q, A, C)
    precision = tp_cum / np.arange(1, c + 1, dtype=np.float64)
    ends = group_end[:, None, :]
    envelope = np.where(ends, precision, -np.inf)
    envelope = np.maximum.accumulate(envelope[..., ::-1], axis=-1)[..., ::-1]
    tp_at_end = np.where(ends, tp_cum, 0.0)
    prev_end = np.zeros_like(tp_at_end)
    prev_end[..., 1:] = np.maximum.accumulate(tp_at_end, axis=-1)[..., :-1]
    counted = ends & (tp_cum > prev_end)  # recall grows in this tie group
    # sklearn lists thresholds low -> high, so the official mean runs over the points reversed.
    flat_counted = counted.reshape(-1, c)
    terms = _compact(envelope.reshape(-1, c), flat_counted, reverse=True)
    n = flat_counted.sum(axis=-1)
    total = _numpy_sum(terms, n)
    ap = np.divide(total, n, out=np.zeros_like(total), where=n > 0)  # no positive clip: 0
    return ap.reshape(q, labels.shape[1])


def highlight_detection_metrics(
    pred_saliency: Sequence[Sequence[float]], gt_records: Sequence[GroundingRecord]
) -> dict[str, dict[str, float]]:
    """``{"HL-min-Fair": {"HL-mAP", "HL-Hit1"}, "HL-min-Good": ..., "HL-min-VeryGood": ...}``.

    pred_saliency[i]: one score per clip of query i; gt_records[i] must carry clip saliency.
    """
    clip_len = CLIP_LENGTH["qvhighlights"]
    num_clips = np.fromiter((int(r.duration / clip_len) for r in gt_records), np.int64)
    width = max(int(num_clips.max(initial=0)), 1)
    q = len(gt_records)
    gt_scores = np.zeros((q, 3, width))
    clip_ids = [r.relevant_clip_ids or () for r in gt_records]
    n_rel = np.fromiter((len(c) for c in clip_ids), np.int64, q)
    flat_ids = np.fromiter((i for ids in clip_ids for i in ids), np.int64, int(n_rel.sum()))
    flat_scores = np.asarray(
        [s for r in gt_records for s in (r.saliency_scores or ())], dtype=np.float64
    ).reshape(-1, 3)
    rows = np.repeat(np.arange(q), n_rel)
    inside = flat_ids < num_clips[rows]  # clips past int(duration / 2) have no slot
    gt_scores[rows[inside], :, flat_ids[inside]] = flat_scores[inside]

    raw, raw_valid, raw_counts = _pack(pred_saliency, None)
    valid = np.arange(width)[None, :] < num_clips[:, None]
    scores = np.zeros((q, width))
    keep = min(width, raw.shape[1])
    scores[:, :keep] = np.where(raw_valid[:, :keep], raw[:, :keep], 0.0)  # truncate / zero-pad
    scores = np.where(valid, scores, 0.0)
    top = np.argmax(np.where(raw_valid, raw, -np.inf), axis=1)
    top_ok = (raw_counts > 0) & (top < num_clips)

    # All (min score, annotator) pairs at once: (Q, S * 3, C) labels share one clip ranking.
    mins = np.asarray(list(HD_MIN_SCORES.values()), dtype=np.float64)
    labels = (gt_scores[:, None] >= mins[None, :, None, None]) & valid[:, None, None, :]
    labels = labels.reshape(q, -1, width).astype(np.float64)
    ap = _saliency_ap(scores, valid, labels)
    n_pos = labels.sum(axis=-1)
    ap = np.where(n_pos == num_clips[:, None], 1.0, ap)  # every clip positive: AP 1
    ap = np.where(num_clips[:, None] == 0, 0.0, ap).reshape(q, len(mins), 3)
    top_labels = labels[np.arange(q), :, np.minimum(top, width - 1)].reshape(q, len(mins), 3)
    hit = np.where(top_ok[:, None, None], top_labels, 0.0)
    out: dict[str, dict[str, float]] = {}
    for i, name in enumerate(HD_MIN_SCORES):
        out[f"HL-min-{name}"] = {
            "HL-mAP": _pct(np.mean(np.ascontiguousarray(ap[:, i]))),
            "HL-Hit1": _pct(np.mean(np.max(hit[:, i], axis=1))),
        }
    return out


# ----------------------------------------------------------------------------------------------
# Charades-STA / TACoS
# ----------------------------------------------------------------------------------------------


def recall_metrics(
    pred_windows: Sequence[Sequence[Sequence[float]]],
    gt_windows: Sequence[Sequence[Sequence[float]]],
) -> dict[str, Any]:
    """R@{1,5} at IoU {0.3, 0.5, 0.7} and mIoU of the top-1 window (file order = rank).

    A query counts as a hit at R@k when one of its first k windows reaches the IoU with one of
    its GT windows; mIoU averages the top-1 window's best IoU. Missing windows never hit.
    """
    k_max = max(RECALL_TOP_K)
    preds, pred_valid, _ = _pack(pred_windows, 3, limit=k_max)
    gt, gt_valid, _ = _pack(gt_windows, 2)
    iou = iou_cross(
        preds[:, :, None, 0], preds[:, :, None, 1], gt[:, None, :, 0], gt[:, None, :, 1]
    )
    iou = np.where(pred_valid[:, :, None] & gt_valid[:, None, :], iou, 0.0)
    best = iou.max(axis=2)  # (Q, P): each window's best GT IoU
    full: dict[str, Any] = {}
    brief: BriefDict = {}
    for k in RECALL_TOP_K:
        top_k = best[:, :k].max(axis=1)
        full[f"R{k}"] = {str(t): _pct(np.mean(top_k >= t)) for t in RECALL_IOU_THRESHOLDS}
    for k in RECALL_TOP_K:
        for t in RECALL_IOU_THRESHOLDS:
            brief[f"R{k}@{t}"] = full[f"R{k}"][str(t)]
    full["mIoU"] = _pct(np.mean(best[:, 0]))
    brief["mIoU"] = full["mIoU"]
    return {"brief": brief, "full": full}


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


def _qvhighlights(
    predictions: list[Mapping[str, Any]], gts: list[GroundingRecord]
) -> dict[str, Any]:
    has_sal = [("pred_saliency_scores" in p) for p in predictions]
    run_hd = any(has_sal)
    if run_hd and not all(has_sal):
        missing = [p["qid"] for p, h in zip(predictions, has_sal) if not h]
        raise MetricsError(
            f"field 'pred_saliency_scores' missing for {len(missing)} of {len(predictions)} "
            f"queries (e.g. qid {missing[0]!r}); give it for all queries or none (MR only)"
        )
    if run_hd:
        no_gt = [g.qid for g in gts if g.saliency_scores is None]
        if no_gt:
            raise MetricsError(
                f"ground truth has no saliency_scores for {len(no_gt)} queries (e.g. qid "
                f"{no_gt[0]!r}); highlight detection needs them (drop pred_saliency_scores "
                "to score moment retrieval only)"
            )
    mr = moment_retrieval_metrics(
        [p["pred_relevant_windows"] for p in predictions], [g.windows for g in gts]
    )
    brief = {
        "MR-full-mAP": mr["full"]["MR-mAP"]["average"],
        "MR-full-mAP@0.5": mr["full"]["MR-mAP"]["0.5"],
        "MR-full-mAP@0.75": mr["full"]["MR-mAP"]["0.75"],
        "MR-short-mAP": mr["short"]["MR-mAP"]["average"],
        "MR-middle-mAP": mr["middle"]["MR-mAP"]["average"],
        "MR-long-mAP": mr["long"]["MR-mAP"]["average"],
        "MR-full-R1@0.5": mr["full"]["MR-R1"]["0.5"],
        "MR-full-R1@0.7": mr["full"]["MR-R1"]["0.7"],
    }
    detail: dict[str, Any] = dict(mr)
    ordered_brief: BriefDict = dict(sorted(brief.items()))
    if run_hd:
        hd = highlight_detection_metrics([p["pred_saliency_scores"] for p in predictions], gts)
        detail.update(hd)
        for block, values in hd.items():
            for key, value in values.items():
                ordered_brief[f"{block}-{key.split('-')[1]}"] = value
    return {"brief": ordered_brief, **dict(sorted(detail.items()))}


def brief_metric_names(dataset: str) -> frozenset[str]:
    """Every key the ``brief`` block of :func:`evaluate_predictions` can hold for ``dataset``."""
    if dataset != "qvhighlights":
        recall = [f"R{k}@{t}" for k in RECALL_TOP_K for t in RECALL_IOU_THRESHOLDS]
        return frozenset([*recall, "mIoU"])
    mr = [f"MR-{b}-mAP" for b in ("full", "short", "middle", "long")]
    mr += ["MR-full-mAP@0.5", "MR-full-mAP@0.75", "MR-full-R1@0.5", "MR-full-R1@0.7"]
    hl = [f"HL-min-{level}-{m}" for level in HD_MIN_SCORES for m in ("mAP", "Hit1")]
    return frozenset(mr + hl)


def evaluate_predictions(
    predictions: Sequence[Mapping[str, Any]],
    ground_truth: Sequence[GroundingRecord],
    dataset: str = "qvhighlights",
    validate: bool = True,
) -> dict[str, Any]:
    """Score prediction rows (official jsonl dicts) against annotation records.

    qvhighlights -> the official evaluator's layout (module docstring); charades / tacos ->
    ``{"brief": {"R1@0.3", ..., "R5@0.7", "mIoU"}, "full": {...}}``. Values are percentages
    rounded to 2 decimals. Queries are visited in prediction order, as the official code does.
    Raises :class:`~sidetune.grounding.predictions.PredictionError` for malformed rows,
    ``QidMismatchError`` when the qid sets differ, :class:`MetricsError` for unscorable input.
    """
    check_dataset(dataset)
    predictions = list(predictions)
    if not predictions:
        raise MetricsError("no predictions to evaluate")
    if validate:
        validate_predictions(predictions)
    gt_by_qid = {r.qid: r for r in ground_truth}
    match_qids((p["qid"] for p in predictions), (r.qid for r in ground_truth))
    gts = [gt_by_qid[p["qid"]] for p in predictions]
    no_windows = [g.qid for g in gts if not g.windows]
    if no_windows:
        raise MetricsError(
            f"ground truth has no relevant_windows for {len(no_windows)} queries (e.g. qid "
            f"{no_windows[0]!r}): a file without annotations cannot be scored"
        )
    if dataset == "qvhighlights":
        return _qvhighlights(predictions, gts)
    return recall_metrics(
        [p["pred_relevant_windows"] for p in predictions], [g.windows for g in gts]
    )
