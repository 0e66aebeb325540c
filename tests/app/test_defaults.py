"""What ``sidetune serve --run`` finds beside a ``make demo`` run."""

from __future__ import annotations

from pathlib import Path

from sidetune.app.defaults import run_defaults


def _layout(root: Path, val: str) -> Path:
    run = root / "run"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"task: grounding\ndata:\n  val: {val}\n")
    (root / "preds_val.jsonl").write_text("{}\n")
    return run


def test_demo_layout(tmp_path: Path) -> None:
    run = _layout(tmp_path, "rendered/val.jsonl")  # relative to the demo folder
    (tmp_path / "rendered" / "videos").mkdir(parents=True)
    (tmp_path / "rendered" / "val.jsonl").write_text("{}\n")
    (tmp_path / "synthetic").mkdir()
    (tmp_path / "synthetic" / "val.jsonl").write_text("{}\n")
    found = run_defaults(run)
    assert found.pred == (tmp_path / "preds_val.jsonl").resolve()
    assert found.gt == (tmp_path / "rendered" / "val.jsonl").resolve()  # the run's data.val wins
    assert found.videos == (tmp_path / "rendered" / "videos").resolve()  # beside the GT


def test_fallback_gt_and_nothing_found(tmp_path: Path) -> None:
    run = _layout(tmp_path / "a", "gone/val.jsonl")
    (tmp_path / "a" / "synthetic").mkdir()
    (tmp_path / "a" / "synthetic" / "val.jsonl").write_text("{}\n")
    found = run_defaults(run)
    assert found.gt == (tmp_path / "a" / "synthetic" / "val.jsonl").resolve()
    assert found.videos is None
    (tmp_path / "a" / "rendered").mkdir()
    assert run_defaults(run).videos == (tmp_path / "a" / "rendered").resolve()
    bare = tmp_path / "b" / "run"
    bare.mkdir(parents=True)
    assert run_defaults(bare).pred is None and run_defaults(bare).gt is None
