"""Prediction browser data: failure kinds, buckets, per-query rows, metrics equal to evaluate's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidetune.app.browser import (
    failure_kind,
    iou,
    length_buckets,
    load_browser,
    parse_qid,
    query_row,
)
from sidetune.errors import SidetuneError
from sidetune.grounding.annotations import GroundingRecord, load_annotations
from sidetune.grounding.metrics import evaluate_predictions
from sidetune.grounding.predictions import read_predictions
from tests.shared_data import shared_path


def test_iou_hand_values() -> None:
    assert iou([0, 10], [5, 15]) == pytest.approx(5 / 15)
    assert iou([0, 10], [10, 20]) == 0.0
    assert iou([3, 3], [0, 10]) == 0.0  # empty prediction
    assert iou([2, 4, 0.9], [0, 10]) == pytest.approx(0.2)  # the score column is ignored


@pytest.mark.parametrize(
    ("pred", "kind"),
    [
        ([10, 20], "hit"),  # exact
        ([11, 19], "hit"),  # IoU 0.8
        ([30, 40], "no overlap"),
        ([20, 30], "no overlap"),  # touching is no overlap
        ([12, 15], "too short"),  # inside GT: IoU 0.3 = its length ratio
        ([0, 40], "too long"),  # contains GT: IoU 0.25
        ([16, 26], "shifted"),  # same length, IoU 4/16 = 0.25
        ([14, 22], "hit"),  # IoU 6/12 = 0.5 exactly: a hit at 0.5
    ],
)
def test_failure_kind_at_half(pred: list[float], kind: str) -> None:
    assert failure_kind(pred, [(10.0, 20.0)], 0.5) == kind


def test_failure_kind_threshold_and_nearest_gt() -> None:
    # IoU 0.5 (hit at 0.5) but a miss at 0.7; length ratio 0.8 >= 0.7 -> shifted.
    assert failure_kind([14, 22], [(10.0, 20.0)], 0.7) == "shifted"
    # Ratio 0.6: a hit needs ratio >= 0.7, so too short at 0.7 although it sits inside the GT.
    assert failure_kind([12, 18], [(10.0, 20.0)], 0.7) == "too short"
    assert failure_kind([12, 18], [(10.0, 20.0)], 0.5) == "hit"
    # Judged against the GT window it overlaps most (the second), not the first.
    assert failure_kind([50, 52], [(0.0, 4.0), (48.0, 60.0)], 0.5) == "too short"
    assert failure_kind(None, [(0.0, 4.0)], 0.5) == "none"


def test_length_buckets() -> None:
    assert length_buckets([(0, 10)]) == ["short"]  # (0, 10]
    assert length_buckets([(0, 10.5), (20, 80)]) == ["middle", "long"]
    assert length_buckets([(0, 8), (10, 12), (20, 200)]) == ["short", "over 150 s"]


def test_query_row_top1_is_first_in_file_order() -> None:
    gt = GroundingRecord(1, "v", "q", 60.0, ((10.0, 20.0), (40.0, 44.0)))
    pred = {"qid": 1, "pred_relevant_windows": [[0, 5, 0.2], [10, 20, 0.9], [40, 44, 0.1]]}
    row = query_row(pred, gt)
    assert row["top1_iou"] == 0.0 and row["best_iou"] == 1.0
    assert row["kind@0.5"] == "no overlap" and row["num_gt"] == 2 and row["num_pred"] == 3
    assert row["buckets"] == ["short"]
    # Windows past the 10 the mAP counts do not make best_iou.
    pred = {"qid": 1, "pred_relevant_windows": [[0, 1, 0.5]] * 10 + [[10, 20, 0.4]]}
    assert query_row(pred, gt)["best_iou"] == 0.0


def test_parse_qid() -> None:
    assert parse_qid("12", {12: 0}) == 12
    assert parse_qid("s30-d52_0", {"s30-d52_0": 0}) == "s30-d52_0"
    assert parse_qid("7", {"7": 0}) == "7"
    with pytest.raises(KeyError):
        parse_qid("13", {12: 0})


def test_shared_fixture_metrics_equal_evaluate() -> None:
    pred = shared_path("fixtures", "qvhighlights_eval", "sample_val_preds.jsonl")
    gt = shared_path("data", "qvhighlights", "highlight_val_release.jsonl")
    data = load_browser(pred, gt, "qvhighlights")
    expected = evaluate_predictions(read_predictions(pred), load_annotations(gt).records)
    assert data.metrics == expected
    assert len(data.rows) == 1550
    # The share of top-1 hits at 0.5 is the official R1@0.5.
    hits = sum(r["kind@0.5"] == "hit" for r in data.rows)
    assert round(100 * hits / len(data.rows), 2) == expected["brief"]["MR-full-R1@0.5"]
    hits7 = sum(r["kind@0.7"] == "hit" for r in data.rows)
    assert round(100 * hits7 / len(data.rows), 2) == expected["brief"]["MR-full-R1@0.7"]
    detail = data.detail(2579)
    assert detail["gt_windows"] == [[82.0, 150.0]] and len(detail["gt_saliency"]) == 75
    assert detail["gt_saliency"][41] == pytest.approx(4 / 3)  # clip 41: scores [1, 1, 2]
    assert detail["gt_saliency"][0] == 0.0
    assert len(detail["pred_windows"]) == 10 and detail["pred_windows"][1]["iou"] > 0.8


@pytest.mark.parametrize("dataset", ["charades", "tacos"])
def test_recall_datasets(dataset: str, tmp_path: Path) -> None:
    name = {"charades": ("charades_sta", "charades_test_release.jsonl"),
            "tacos": ("tacos", "tacos_test_release.jsonl")}[dataset]  # fmt: skip
    gt_path = shared_path("data", *name)
    records = load_annotations(gt_path, dataset).records[:200]
    gt = tmp_path / "gt.jsonl"
    gt.write_text("".join(json.dumps({"qid": r.qid, "query": r.query, "vid": r.vid,
                  "duration": r.duration, "relevant_windows": [list(w) for w in r.windows]}) + "\n"
                  for r in records))  # fmt: skip
    # Every other query exact, the others shifted by the window's length (no overlap).
    rows = []
    for i, r in enumerate(records):
        s, e = r.windows[0]
        w = [s, e] if i % 2 == 0 else [e, 2 * e - s]
        rows.append({"qid": r.qid, "pred_relevant_windows": [[*w, 1.0]]})
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_browser(pred, gt, dataset)
    assert data.metrics["brief"]["R1@0.7"] == 50.0
    assert [r["kind@0.7"] for r in data.rows[:4]] == ["hit", "no overlap", "hit", "no overlap"]
    assert data.detail(records[1].qid)["gt_saliency"] is None


def test_bad_predictions_message_is_evaluates(tmp_path: Path) -> None:
    gt = tmp_path / "gt.jsonl"
    gt.write_text(json.dumps({"qid": 1, "query": "q", "vid": "v", "duration": 30,
                              "relevant_windows": [[0, 4]]}) + "\n")  # fmt: skip
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"qid": 1, "pred_relevant_windows": [[5, 2, 0.3]]}) + "\n")
    with pytest.raises(SidetuneError, match=r"pred\.jsonl:1: field 'pred_relevant_windows\[0\]'"):
        load_browser(pred, gt, "charades")
