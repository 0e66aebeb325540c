"""``sidetune evaluate`` through ``sidetune.cli.main``: table, JSON, one-line errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sidetune.cli import main
from sidetune.grounding.annotations import load_annotations
from sidetune.grounding.metrics import evaluate_predictions
from sidetune.grounding.predictions import read_predictions
from tests.shared_data import shared_path


def gt_row(qid: int, windows: list[list[int]]) -> dict[str, Any]:
    return {
        "qid": qid,
        "query": f"query {qid}",
        "duration": 150,
        "vid": f"vid{qid}",
        "relevant_clip_ids": [w // 2 for s, e in windows for w in range(s, e, 2)],
        "saliency_scores": [[2, 3, 4]] * sum((e - s) // 2 for s, e in windows),
        "relevant_windows": windows,
    }


def pred_row(qid: int, windows: list[list[float]]) -> dict[str, Any]:
    return {
        "qid": qid,
        "query": f"query {qid}",
        "vid": f"vid{qid}",
        "pred_relevant_windows": windows,
        "pred_saliency_scores": [0.1 * (i % 7) for i in range(75)],
    }


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    # one GT window per length bucket (short, middle, long) so no bucket is empty
    spans = {1: [10, 18], 2: [20, 40], 3: [60, 100], 4: [100, 108]}
    gt = write_jsonl(tmp_path / "gt.jsonl", [gt_row(q, [w]) for q, w in spans.items()])
    preds = [pred_row(q, [[*w, 0.9], [0, 4, 0.2]]) for q, w in spans.items()]
    pred = write_jsonl(tmp_path / "pred.jsonl", preds)
    return gt, pred


def test_evaluate_prints_table_and_writes_json(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt, pred = files
    out = tmp_path / "sub" / "metrics.json"
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "qvhighlights: 4 queries" in stdout
    assert "MR-full-mAP" in stdout and "100.00" in stdout and "HL-min-VeryGood-Hit1" in stdout
    written = json.loads(out.read_text())
    expected = evaluate_predictions(read_predictions(pred), load_annotations(gt).records)
    assert written == expected
    assert written["brief"]["MR-full-R1@0.7"] == 100.0
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]  # no temp files left


def test_evaluate_official_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = shared_path("data", "qvhighlights", "highlight_val_release.jsonl")
    pred = shared_path("fixtures", "qvhighlights_eval", "sample_val_preds.jsonl")
    ref = shared_path("fixtures", "qvhighlights_eval", "sample_val_preds_metrics_raw.json")
    out = tmp_path / "m.json"
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == json.loads(ref.read_text())
    assert "MR-full-R1@0.5          53.94" in capsys.readouterr().out


def test_qid_mismatch(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt, _ = files
    pred = write_jsonl(tmp_path / "p.jsonl", [pred_row(q, [[0, 8, 0.5]]) for q in (2, 3, 4, 8, 9)])
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: qid mismatch:") and "\n" not in err
    assert f"1 qid(s) of {gt} missing from {pred} (1)" in err
    assert f"2 extra qid(s) in {pred} not in {gt} (8, 9)" in err


def _run_bad(tmp_path: Path, gt: Path, rows: list[Any], capsys: pytest.CaptureFixture[str]) -> str:
    pred = write_jsonl(tmp_path / "bad.jsonl", rows)
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert "\n" not in err and err.startswith(f"error: {pred}:")
    return err


def test_truncated_line(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt, pred = files
    lines = pred.read_text().splitlines(keepends=True)
    rows = [*lines[:2], lines[2][:40]]  # third line cut mid-way, as after a crash
    err = _run_bad(tmp_path, gt, rows, capsys)
    assert "bad.jsonl:3: invalid JSON" in err and "truncated line" in err


def test_end_before_start(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt, _ = files
    rows = [pred_row(1, [[10, 18, 0.9]]), pred_row(2, [[20, 28, 0.9], [30, 25, 0.1]])]
    err = _run_bad(tmp_path, gt, rows, capsys)
    assert "bad.jsonl:2: field 'pred_relevant_windows[1]': end 25 < start 30" in err


def test_missing_key_and_bad_values(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt, _ = files
    row = pred_row(2, [[20, 28, 0.9]])
    del row["pred_relevant_windows"]
    err = _run_bad(tmp_path, gt, ["\n", pred_row(1, [[10, 18, 0.9]]), row], capsys)
    assert "bad.jsonl:3: field 'pred_relevant_windows': missing key" in err
    err = _run_bad(tmp_path, gt, [pred_row(1, [[10, 18]])], capsys)
    assert "bad.jsonl:1: field 'pred_relevant_windows[0]': expected [start, end, score]" in err
    bad_sal = pred_row(1, [[10, 18, 0.9]])
    bad_sal["pred_saliency_scores"][4] = "high"
    err = _run_bad(tmp_path, gt, [bad_sal], capsys)
    assert "bad.jsonl:1: field 'pred_saliency_scores[4]'" in err


def test_bad_ground_truth_file(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, pred = files
    gt = write_jsonl(tmp_path / "gt_bad.jsonl", [gt_row(1, [[10, 18]]), gt_row(2, [[28, 20]])])
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred)]) == 1
    err = capsys.readouterr().err
    assert f"{gt}:2: field 'relevant_windows[0]': end 20 <= start 28" in err


def test_charades_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = write_jsonl(
        tmp_path / "cha.jsonl",
        [
            {"qid": q, "query": "q", "vid": "v", "duration": 30.5, "relevant_windows": [[2.0, 9.5]]}
            for q in (0, 1)
        ],
    )
    pred = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"qid": 0, "pred_relevant_windows": [[2.0, 9.5, 1.0]]},
            {"qid": 1, "pred_relevant_windows": [[20.0, 25.0, 1.0], [2.5, 9.5, 0.5]]},
        ],
    )
    out = tmp_path / "m.json"
    args = [
        "evaluate",
        "--gt",
        str(gt),
        "--pred",
        str(pred),
        "--dataset",
        "charades",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    brief = json.loads(out.read_text())["brief"]
    assert brief == {
        "R1@0.3": 50.0,
        "R1@0.5": 50.0,
        "R1@0.7": 50.0,
        "R5@0.3": 100.0,
        "R5@0.5": 100.0,
        "R5@0.7": 100.0,
        "mIoU": 50.0,
    }
    assert "charades: 2 queries" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate"], "evaluate needs --gt and --pred (or --run DIR)"),
        (["evaluate", "--run", "x", "--gt", "g.jsonl"], "do not combine it with --gt/--pred"),
        (["evaluate", "--run", "no/such/run"], "config.yaml: not found"),
    ],
)
def test_evaluate_argument_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_utf8_bom_is_accepted(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Editors on Windows write a byte-order mark; it used to read as a "truncated line"."""
    gt, pred = files
    bom_pred = tmp_path / "bom_pred.jsonl"
    bom_pred.write_bytes(b"\xef\xbb\xbf" + pred.read_bytes())
    bom_gt = tmp_path / "bom_gt.jsonl"
    bom_gt.write_bytes(b"\xef\xbb\xbf" + gt.read_bytes())
    assert main(["evaluate", "--gt", str(bom_gt), "--pred", str(bom_pred)]) == 0
    assert "MR-full-mAP" in capsys.readouterr().out


def test_booleans_are_not_numbers(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt, _ = files
    rows = [pred_row(q, [[10, 18, 0.9]]) for q in (1, 2, 3, 4)]
    rows[1]["pred_saliency_scores"][3] = True
    err = _run_bad(tmp_path, gt, rows, capsys)
    assert "bad.jsonl:2: field 'pred_saliency_scores[3]': expected a finite number, got True" in err
    rows = [pred_row(q, [[10, 18, 0.9]]) for q in (1, 2, 3, 4)]
    rows[2]["pred_relevant_windows"] = [[10, 18, 0.9], [0, True, 0.5]]
    err = _run_bad(tmp_path, gt, rows, capsys)
    assert "bad.jsonl:3: field 'pred_relevant_windows[1]'" in err


def test_saliency_list_of_the_wrong_length(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt, _ = files
    rows = [pred_row(q, [[10, 18, 0.9]]) for q in (1, 2, 3, 4)]
    rows[3]["pred_saliency_scores"] = rows[3]["pred_saliency_scores"][:10]
    err = _run_bad(tmp_path, gt, rows, capsys)
    assert "bad.jsonl:4: field 'pred_saliency_scores': 10 scores but qid 4 has 75 clips" in err
    # one clip short or long (features one clip off the annotation) is fine
    rows[3]["pred_saliency_scores"] = [0.5] * 74
    rows[2]["pred_saliency_scores"] = [0.5] * 76
    pred = write_jsonl(tmp_path / "ok.jsonl", rows)
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred)]) == 0


def test_charades_file_without_dataset_flag_suggests_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    row = {"qid": 0, "query": "q", "vid": "v", "duration": 30.5, "relevant_windows": [[2.0, 9.5]]}
    gt = write_jsonl(tmp_path / "cha.jsonl", [row])
    pred = write_jsonl(tmp_path / "p.jsonl", [{"qid": 0, "pred_relevant_windows": [[2, 9, 1.0]]}])
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred)]) == 1
    err = capsys.readouterr().err
    assert "cha.jsonl:1: field 'relevant_clip_ids': missing key" in err
    assert "--dataset charades" in err


def test_large_prediction_file_shows_progress(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sidetune.grounding.predictions as predictions

    monkeypatch.setattr(predictions, "PROGRESS_BYTES", 10)
    gt, pred = files
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred)]) == 0
    assert f"reading {pred.name}" in capsys.readouterr().err


def test_brief_metric_names_are_the_keys_evaluate_reports(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    """fit() rejects a best_metric up front from this list: it must not drift from the evaluator."""
    from sidetune.grounding.metrics import brief_metric_names

    gt, pred = files
    out = tmp_path / "m.json"
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred), "--out", str(out)]) == 0
    assert set(json.loads(out.read_text())["brief"]) == brief_metric_names("qvhighlights")
    rows = [{"qid": 0, "pred_relevant_windows": [[2.0, 9.5, 1.0]]}]
    cha = [{"qid": 0, "query": "q", "vid": "v", "duration": 30.5, "relevant_windows": [[2.0, 9.5]]}]
    gt_c, pred_c = write_jsonl(tmp_path / "c.jsonl", cha), write_jsonl(tmp_path / "pc.jsonl", rows)
    args = ["evaluate", "--gt", str(gt_c), "--pred", str(pred_c), "--dataset", "charades"]
    assert main([*args, "--out", str(out)]) == 0
    assert set(json.loads(out.read_text())["brief"]) == brief_metric_names("charades")
