"""Grounding metrics: official exactness, hand-computed edge cases, a loop reference on random data."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest

from sidetune.grounding.annotations import GroundingRecord, load_annotations
from sidetune.grounding.metrics import (
    MR_IOU_THRESHOLDS,
    MetricsError,
    _mr_average_precision,
    _numpy_sum,
    _pack,
    _saliency_ap,
    evaluate_predictions,
    moment_retrieval_metrics,
    temporal_iou,
)
from sidetune.grounding.predictions import PredictionError, QidMismatchError, read_predictions
from tests.shared_data import shared_path

BRIEF_KEYS = [
    "MR-full-R1@0.5",
    "MR-full-R1@0.7",
    "MR-full-mAP",
    "MR-full-mAP@0.5",
    "MR-full-mAP@0.75",
    "MR-long-mAP",
    "MR-middle-mAP",
    "MR-short-mAP",
    "HL-min-Fair-mAP",
    "HL-min-Fair-Hit1",
    "HL-min-Good-mAP",
    "HL-min-Good-Hit1",
    "HL-min-VeryGood-mAP",
    "HL-min-VeryGood-Hit1",
]


def rec(
    qid: Any, windows: list[list[float]], duration: float = 150.0, **kw: Any
) -> GroundingRecord:
    return GroundingRecord(
        qid=qid,
        vid=f"v{qid}",
        query="q",
        duration=duration,
        windows=tuple((float(s), float(e)) for s, e in windows),
        relevant_clip_ids=kw.get("clip_ids"),
        saliency_scores=kw.get("saliency"),
    )


def pred(qid: Any, windows: list[list[float]], saliency: list[float] | None = None) -> dict:
    row: dict[str, Any] = {"qid": qid, "vid": f"v{qid}", "pred_relevant_windows": windows}
    if saliency is not None:
        row["pred_saliency_scores"] = saliency
    return row


def mr(preds: list[dict], gts: list[GroundingRecord]) -> dict:
    return evaluate_predictions(preds, gts, "qvhighlights")


# ---------------------------------------------------------------------------------------------
# Exactness against the official evaluator's output
# ---------------------------------------------------------------------------------------------


def test_official_sample_predictions_exact() -> None:
    gt_path = shared_path("data", "qvhighlights", "highlight_val_release.jsonl")
    pred_path = shared_path("fixtures", "qvhighlights_eval", "sample_val_preds.jsonl")
    ref_path = shared_path("fixtures", "qvhighlights_eval", "sample_val_preds_metrics_raw.json")
    reference = json.loads(ref_path.read_text())
    metrics = evaluate_predictions(read_predictions(pred_path), load_annotations(gt_path).records)
    assert metrics == reference
    assert list(metrics) == list(reference)  # same block order
    assert list(metrics["brief"]) == BRIEF_KEYS == list(reference["brief"])
    for bucket in ("full", "long", "middle", "short"):
        assert list(metrics[bucket]["MR-mAP"]) == list(reference[bucket]["MR-mAP"])


# ---------------------------------------------------------------------------------------------
# Moment retrieval edge cases (hand-computed)
# ---------------------------------------------------------------------------------------------


def test_perfect_single_window() -> None:
    m = mr([pred(1, [[0, 10, 0.9]])], [rec(1, [[0, 10]])])
    assert set(m) == {"brief", "full", "long", "middle", "short"}  # no saliency -> MR only
    assert list(m["brief"]) == BRIEF_KEYS[:8]
    assert all(v == 100.0 for v in m["full"]["MR-mAP"].values())
    assert all(v == 100.0 for v in m["full"]["MR-R1"].values())


def test_score_ties_keep_file_order() -> None:
    gt = [rec(1, [[0, 10]])]
    # equal scores: the wrong window listed first ranks first -> precision 1/2 at recall 1
    assert mr([pred(1, [[20, 30, 0.5], [0, 10, 0.5]])], gt)["brief"]["MR-full-mAP"] == 50.0
    assert mr([pred(1, [[0, 10, 0.5], [20, 30, 0.5]])], gt)["brief"]["MR-full-mAP"] == 100.0
    # higher score wins regardless of file order
    assert mr([pred(1, [[20, 30, 0.4], [0, 10, 0.5]])], gt)["brief"]["MR-full-mAP"] == 100.0


def test_r1_uses_first_window_in_file_order() -> None:
    m = mr([pred(1, [[20, 30, 0.1], [0, 10, 0.9]])], [rec(1, [[0, 10]])])
    assert m["brief"]["MR-full-R1@0.5"] == 0.0  # first listed window misses
    assert m["brief"]["MR-full-mAP"] == 100.0  # AP ranks by score


def test_truncation_to_ten_windows_before_sorting() -> None:
    wrong = [[100, 110, 0.9]] * 10
    m = mr([pred(1, [*wrong, [0, 10, 1.0]])], [rec(1, [[0, 10]])])
    assert m["brief"]["MR-full-mAP"] == 0.0  # the 11th window is never seen
    m = mr([pred(1, [*wrong[:9], [0, 10, 0.1]])], [rec(1, [[0, 10]])])
    assert m["brief"]["MR-full-mAP"] == 10.0  # 10th window: precision 1/10 at recall 1


def test_fewer_windows_and_duplicates() -> None:
    gt = [rec(1, [[0, 10]])]
    m = mr([pred(1, [[0, 10, 0.9], [0, 10, 0.8]])], gt)  # second copy is a false positive
    assert m["brief"]["MR-full-mAP"] == 100.0
    m = mr([pred(1, [[50, 60, 0.9], [0, 10, 0.8]])], gt)
    assert m["full"]["MR-mAP"]["0.5"] == 50.0


def test_multiple_gt_windows() -> None:
    gt = [rec(1, [[0, 10], [20, 30], [40, 50]])]
    m = mr([pred(1, [[0, 10, 0.9], [100, 110, 0.8], [20, 30, 0.7]])], gt)
    # tp, fp, tp over 3 GT: AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    assert m["full"]["MR-mAP"]["0.5"] == 55.56
    m = mr([pred(1, [[20, 30, 0.9], [40, 50, 0.8]])], [rec(1, [[0, 10], [20, 30]])])
    assert m["full"]["MR-mAP"]["0.5"] == 50.0  # one of two found: AP 1/2
    assert m["full"]["MR-R1"]["0.5"] == 100.0  # top-1 matches the GT it overlaps most


def test_equal_iou_goes_to_later_gt_window() -> None:
    gt = [rec(1, [[0, 10], [10, 20]])]
    # [0, 20] has IoU 0.5 with both; it takes [10, 20], so [10, 20] later finds it locked
    m = mr([pred(1, [[0, 20, 0.9], [10, 20, 0.8]])], gt)
    assert m["full"]["MR-mAP"]["0.5"] == 50.0
    assert m["full"]["MR-mAP"]["0.55"] == 25.0  # only the second one matches above 0.5


def test_zero_length_windows_never_match() -> None:
    gt = [rec(1, [[0, 10]])]
    m = mr([pred(1, [[5, 5, 0.9], [0, 0, 0.8], [10, 10, 0.7]])], gt)
    assert m["brief"]["MR-full-mAP"] == 0.0 and m["brief"]["MR-full-R1@0.5"] == 0.0
    assert temporal_iou(np.array([[3.0, 3.0]]), np.array([[3.0, 3.0]]))[0, 0] == 0.0


def test_no_predicted_window_scores_zero() -> None:
    m = mr([pred(1, []), pred(2, [[0, 10, 1.0]])], [rec(1, [[0, 10]]), rec(2, [[0, 10]])])
    assert m["brief"]["MR-full-mAP"] == 50.0 and m["brief"]["MR-full-R1@0.5"] == 50.0


def test_length_buckets_filter_gt_windows_and_queries() -> None:
    gts = [rec(1, [[0, 8], [20, 60]]), rec(2, [[0, 20]])]
    preds = [pred(1, [[0, 8, 0.9]]), pred(2, [[0, 20, 0.9]])]
    m = mr(preds, gts)
    assert m["short"]["MR-mAP"]["average"] == 100.0  # query 1 against its 8 s window only
    assert m["long"]["MR-mAP"]["average"] == 0.0  # query 1 against [20, 60] only
    assert m["middle"]["MR-mAP"]["average"] == 100.0  # query 2 only
    assert m["full"]["MR-mAP"]["average"] == 75.0  # (1/2 + 1) / 2
    assert m["full"]["MR-R1"]["0.5"] == 100.0
    # boundaries: (0, 10] / (10, 30] / (30, 150]
    m = mr([pred(1, [[0, 10, 1]]), pred(2, [[0, 30, 1]])], [rec(1, [[0, 10]]), rec(2, [[0, 30]])])
    assert m["short"]["MR-R1"]["0.5"] == 100.0 and m["middle"]["MR-R1"]["0.5"] == 100.0
    assert m["long"]["MR-mAP"]["average"] != m["long"]["MR-mAP"]["average"]  # empty -> nan


# ---------------------------------------------------------------------------------------------
# Highlight detection edge cases
# ---------------------------------------------------------------------------------------------


def hd_rec(
    qid: Any,
    clip_ids: tuple[int, ...],
    saliency: tuple[tuple[int, ...], ...],
    duration: float = 8.0,
) -> GroundingRecord:
    return rec(qid, [[0, duration]], duration=duration, clip_ids=clip_ids, saliency=saliency)


def test_hd_ranking_ap_and_hit1() -> None:
    gt = [hd_rec(1, (1, 2), ((4, 4, 4), (2, 2, 2)))]  # 4 clips
    m = mr([pred(1, [[0, 8, 1]], [0.9, 0.1, 0.5, 0.2])], gt)
    # Fair positives {1, 2}; ranking 0-, 2+, 3-, 1+ -> precisions 1/2, 2/4 -> AP 0.5
    assert m["HL-min-Fair"] == {"HL-mAP": 50.0, "HL-Hit1": 0.0}
    # VeryGood positives {1}: found at rank 4 -> AP 1/4
    assert m["HL-min-VeryGood"]["HL-mAP"] == 25.0
    m = mr([pred(1, [[0, 8, 1]], [0.1, 0.9, 0.5, 0.2])], gt)
    assert m["HL-min-Fair"] == {"HL-mAP": 100.0, "HL-Hit1": 100.0}


def test_hd_tied_scores_form_one_recall_level() -> None:
    gt = [hd_rec(1, (1, 2), ((4, 4, 4), (4, 4, 4)))]
    # clips 0, 1, 2 tie: one threshold reaching recall 1 at precision 2/3
    m = mr([pred(1, [[0, 8, 1]], [0.5, 0.5, 0.5, 0.1])], gt)
    assert m["HL-min-Fair"]["HL-mAP"] == 66.67
    assert m["HL-min-Fair"]["HL-Hit1"] == 0.0  # argmax takes the first tied clip (0)


def test_hd_annotators_mean_for_map_max_for_hit1() -> None:
    gt = [hd_rec(1, (1,), ((4, 0, 0),))]
    m = mr([pred(1, [[0, 8, 1]], [0.0, 1.0, 0.0, 0.0])], gt)
    # annotator 1: AP 1; annotators 2, 3 have no positive clip: AP 0
    assert m["HL-min-Fair"] == {"HL-mAP": 33.33, "HL-Hit1": 100.0}


def test_hd_saliency_length_mismatch() -> None:
    gt = [hd_rec(1, (3,), ((4, 4, 4),))]  # positive is the last of 4 clips
    short = mr([pred(1, [[0, 8, 1]], [0.3, 0.2])], gt)  # zero-padded: clip 3 ties with clip 2
    # ranking 0, 1, then the tie {2, 3}: the positive arrives with the 4th clip -> AP 1/4
    assert short["HL-min-Fair"]["HL-mAP"] == 25.0
    long = mr([pred(1, [[0, 8, 1]], [0.1, 0.2, 0.3, 0.4, 9.0])], gt)
    # the 5th score is cut for the AP, but its argmax lies past the video: Hit1 misses
    assert long["HL-min-Fair"] == {"HL-mAP": 100.0, "HL-Hit1": 0.0}


def test_hd_all_positive_and_all_negative_clips() -> None:
    all_pos = hd_rec(1, (0, 1, 2, 3), ((4, 4, 4),) * 4)
    none_pos = hd_rec(2, (0,), ((1, 1, 1),))
    preds = [pred(1, [[0, 8, 1]], [0.1, 0.2, 0.3, 0.4]), pred(2, [[0, 8, 1]], [0.1, 0.2, 0.3, 0.4])]
    m = mr(preds, [all_pos, none_pos])
    assert m["HL-min-Fair"] == {"HL-mAP": 50.0, "HL-Hit1": 50.0}


def test_missing_saliency_skips_or_errors() -> None:
    gt = [hd_rec(1, (1,), ((4, 4, 4),)), hd_rec(2, (1,), ((4, 4, 4),))]
    m = mr([pred(1, [[0, 8, 1]]), pred(2, [[0, 8, 1]])], gt)
    assert not any(k.startswith("HL") for k in m) and len(m["brief"]) == 8
    with pytest.raises(MetricsError, match=r"pred_saliency_scores' missing for 1 of 2.*qid 2"):
        mr([pred(1, [[0, 8, 1]], [0, 1, 0, 0]), pred(2, [[0, 8, 1]])], gt)
    with pytest.raises(MetricsError, match="no saliency_scores"):
        mr([pred(1, [[0, 8, 1]], [0, 1, 0, 0])], [rec(1, [[0, 8]], duration=8.0)])


# ---------------------------------------------------------------------------------------------
# Errors and Charades / TACoS
# ---------------------------------------------------------------------------------------------


def test_qid_mismatch_lists_missing_and_extra() -> None:
    gts = [rec(q, [[0, 10]]) for q in range(10)]
    preds = [pred(q, [[0, 10, 1]]) for q in range(3, 12)]
    with pytest.raises(QidMismatchError) as err:
        mr(preds, gts)
    msg = str(err.value)
    assert "3 qid(s) of ground truth missing" in msg and "(0, 1, 2)" in msg
    assert "2 extra qid(s)" in msg and "(10, 11)" in msg
    with pytest.raises(QidMismatchError, match="int, the other as str"):
        mr([pred("1", [[0, 10, 1]])], [rec(1, [[0, 10]])])


def test_malformed_rows_and_unscorable_gt() -> None:
    with pytest.raises(
        PredictionError, match=r"row 0\]: field 'pred_relevant_windows\[0\]': end 1 < start 5"
    ):
        mr([pred(1, [[5, 1, 0.3]])], [rec(1, [[0, 10]])])
    with pytest.raises(PredictionError, match="duplicate qid 1"):
        mr([pred(1, [[0, 1, 1]]), pred(1, [[0, 1, 1]])], [rec(1, [[0, 10]])])
    with pytest.raises(MetricsError, match="no relevant_windows"):
        mr([pred(1, [[0, 1, 1]])], [rec(1, [])])
    with pytest.raises(MetricsError, match="no predictions"):
        mr([], [rec(1, [[0, 10]])])


def test_charades_recall_and_miou() -> None:
    gts = [rec(1, [[0, 10]], 30.0), rec(2, [[10, 20]], 30.0)]
    preds = [
        pred(1, [[0, 5, 0.9], [0, 10, 0.8]]),  # top-1 IoU 0.5, R5 finds IoU 1
        pred(2, [[12, 20, 0.9], *[[25, 30, 0.1]] * 4, [10, 20, 0.05]]),  # exact window is 6th
    ]
    m = evaluate_predictions(preds, gts, "charades")
    assert m["brief"] == {
        "R1@0.3": 100.0,
        "R1@0.5": 100.0,
        "R1@0.7": 50.0,
        "R5@0.3": 100.0,
        "R5@0.5": 100.0,
        "R5@0.7": 100.0,
        "mIoU": 65.0,
    }
    assert m["full"]["R1"] == {"0.3": 100.0, "0.5": 100.0, "0.7": 50.0}
    m = evaluate_predictions([pred("a", [[1, 2, 1]])], [rec("a", [[5, 9]], 30.0)], "tacos")
    assert m["brief"]["mIoU"] == 0.0 and m["brief"]["R5@0.3"] == 0.0


# ---------------------------------------------------------------------------------------------
# Loop reference (official semantics written out literally) on random data
# ---------------------------------------------------------------------------------------------


def _ref_iou(p: list[float], gts: list[list[float]]) -> np.ndarray:
    g = np.asarray(gts, dtype=float)
    inter = np.clip(np.minimum(p[1], g[:, 1]) - np.maximum(p[0], g[:, 0]), 0, None)
    union = (p[1] - p[0]) + (g[:, 1] - g[:, 0]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _ref_query_ap(windows: list[list[float]], gts: list[list[float]]) -> np.ndarray:
    ranked = sorted(windows[:10], key=lambda w: -w[2])
    ap = np.zeros(len(MR_IOU_THRESHOLDS))
    if not ranked:
        return ap
    for t_idx, thr in enumerate(MR_IOU_THRESHOLDS):
        taken = [False] * len(gts)
        tp = np.zeros(len(ranked))
        for i, w in enumerate(ranked):
            ious = _ref_iou(w, gts)
            for j in np.argsort(ious, kind="stable")[::-1]:
                if ious[j] < thr:
                    break
                if not taken[j]:
                    taken[j], tp[i] = True, 1
                    break
        tp_cum, fp_cum = np.cumsum(tp), np.cumsum(1 - tp)
        prec = np.hstack([[0], tp_cum / (tp_cum + fp_cum), [0]])
        recall = np.hstack([[0], tp_cum / len(gts), [1]])
        for i in range(len(prec) - 2, -1, -1):
            prec[i] = max(prec[i], prec[i + 1])
        idx = np.where(recall[1:] != recall[:-1])[0] + 1
        ap[t_idx] = np.sum((recall[idx] - recall[idx - 1]) * prec[idx])
    return ap


def _ref_ranking_ap(y: np.ndarray, s: np.ndarray) -> float:
    if len(set(y.tolist())) == 1:
        return float(y[0])
    order = np.argsort(-s, kind="stable")
    ys, ss = y[order], s[order]
    ends = [i for i in range(len(ss)) if i == len(ss) - 1 or ss[i] != ss[i + 1]]
    tps = np.cumsum(ys)[ends]
    precision = np.hstack([(tps / (np.asarray(ends) + 1))[::-1], [1.0]])
    recall = np.hstack([(tps / tps[-1])[::-1], [0.0]]).astype(np.float32)
    for i in range(1, len(precision)):
        precision[i] = max(precision[i - 1], precision[i])
    return float(np.mean(precision[np.where(np.diff(recall))]))


def _random_case(rng: random.Random, n: int) -> tuple[list[dict], list[GroundingRecord]]:
    preds, gts = [], []
    for qid in range(n):
        duration = rng.choice([150.0, 148.0, 126.0, 20.0])
        cuts = sorted(rng.sample(range(0, int(duration) + 1, 2), 2 * rng.randint(1, 4)))
        windows = [[float(cuts[i]), float(cuts[i + 1])] for i in range(0, len(cuts), 2)]
        num_clips = int(duration / 2)
        ids = sorted(rng.sample(range(num_clips), rng.randint(1, min(12, num_clips))))
        sal = tuple(tuple(rng.choice([0, 1, 2, 3, 4, 4]) for _ in range(3)) for _ in ids)
        gts.append(rec(qid, windows, duration, clip_ids=tuple(ids), saliency=sal))
        pw = []
        for _ in range(rng.choice([0, 1, 2, 5, 10, 12, 12])):
            kind = rng.random()
            if kind < 0.3:  # exact GT window
                s, e = rng.choice(windows)
            elif kind < 0.4:  # span covering two neighbours: IoU ties between GT windows
                s, e = rng.choice(windows)[0], rng.choice(windows)[1]
                s, e = min(s, e), max(s, e)
            elif kind < 0.5:  # zero-length
                s = e = rng.choice(cuts)
            else:
                s = rng.randrange(0, int(duration), 2) * 1.0
                e = min(duration, s + rng.choice([2, 4, 6, 10, 20, 40]))
            pw.append([s, e, rng.choice([0.9, 0.5, 0.5, 0.3, 0.1, 0.0])])
        n_sal = rng.choice([num_clips, num_clips, num_clips - 3, num_clips + 4])
        scores = [rng.choice([0.0, 0.25, 0.5, 0.75, 1.0, rng.random()]) for _ in range(n_sal)]
        preds.append(pred(qid, pw, scores))
    return preds, gts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorized_equals_loop_reference(seed: int) -> None:
    rng = random.Random(seed)
    preds, gts = _random_case(rng, 120)
    windows = [p["pred_relevant_windows"] for p in preds]
    gt_windows = [list(map(list, g.windows)) for g in gts]

    # MR: bit-identical per-query AP on the full bucket, equal rounded dicts for all buckets
    ref_ap = np.stack([_ref_query_ap(w, g) for w, g in zip(windows, gt_windows)])
    ref_full = {str(t): float(f"{100 * v:.2f}") for t, v in zip(MR_IOU_THRESHOLDS, ref_ap.mean(0))}
    ref_full["average"] = float(f"{100 * np.mean(ref_ap.mean(0)):.2f}")
    got = moment_retrieval_metrics(windows, gt_windows)
    assert got["full"]["MR-mAP"] == ref_full

    p, pv, _ = _pack(windows, 3, limit=10)
    g, gv, _ = _pack(gt_windows, 2)
    assert np.array_equal(_mr_average_precision(p, pv, g, gv, MR_IOU_THRESHOLDS), ref_ap)

    # HD: bit-identical per-(query, annotator) AP
    for q in range(len(gts)):
        n = int(gts[q].duration / 2)
        y = np.zeros((3, n))
        for cid, s in zip(gts[q].relevant_clip_ids or (), gts[q].saliency_scores or ()):
            y[:, cid] = np.asarray(s) >= 2
        sc = np.zeros(n)
        raw = preds[q]["pred_saliency_scores"][:n]
        sc[: len(raw)] = raw
        ref = [_ref_ranking_ap(y[a], sc) for a in range(3)]
        got_ap = _saliency_ap(sc[None], np.ones((1, n), bool), y[None])[0]
        assert [float(v) for v in got_ap] == ref


def test_metrics_dict_matches_reference_end_to_end() -> None:
    rng = random.Random(7)
    preds, gts = _random_case(rng, 80)
    m = evaluate_predictions(preds, gts, "qvhighlights")
    assert list(m["brief"]) == BRIEF_KEYS
    # R1 by the reference's definition: first window vs its best GT, hull IoU
    hits = []
    for p, g in zip(preds, gts):
        if not p["pred_relevant_windows"]:
            hits.append(0.0)
            continue
        w = p["pred_relevant_windows"][0]
        best = list(g.windows)[int(np.argmax(_ref_iou(w, [list(x) for x in g.windows])))]
        inter = max(0.0, min(w[1], best[1]) - max(w[0], best[0]))
        hull = max(w[1], best[1]) - min(w[0], best[0])
        hits.append(inter / hull if hull else 0.0)
    hits_arr = np.asarray(hits)
    for t in MR_IOU_THRESHOLDS:
        assert m["full"]["MR-R1"][str(t)] == float(f"{np.mean(hits_arr >= t) * 100:.2f}")
    # HD by the reference: per-annotator AP averaged, Hit@1 = any annotator positive
    for name, min_score in (("Fair", 2), ("Good", 3), ("VeryGood", 4)):
        aps, hit1 = [], []
        for p, g in zip(preds, gts):
            n = int(g.duration / 2)
            y = np.zeros((3, n))
            for cid, s in zip(g.relevant_clip_ids or (), g.saliency_scores or ()):
                y[:, cid] = np.asarray(s) >= min_score
            raw = np.asarray(p["pred_saliency_scores"], dtype=float)
            sc = np.zeros(n)
            sc[: min(n, len(raw))] = raw[:n]
            aps.append([_ref_ranking_ap(y[a], sc) for a in range(3)])
            top = int(np.argmax(raw))
            hit1.append(float(y[:, top].max()) if top < n else 0.0)
        assert m[f"HL-min-{name}"] == {
            "HL-mAP": float(f"{100 * np.mean(np.asarray(aps)):.2f}"),
            "HL-Hit1": float(f"{100 * np.mean(hit1):.2f}"),
        }


@pytest.mark.parametrize("length", [5, 11, 75, 130])
def test_pairwise_sum_emulation_matches_numpy(length: int) -> None:
    rng = np.random.default_rng(length)
    counts = rng.integers(0, length + 1, 300)
    terms = rng.random((300, length)) * rng.choice([1 / 3, 1 / 7, 0.1], (300, length))
    terms[np.arange(length)[None, :] >= counts[:, None]] = 0.0
    expected = np.array([np.sum(terms[i, : counts[i]]) for i in range(300)])
    assert np.array_equal(_numpy_sum(terms, counts), expected)
