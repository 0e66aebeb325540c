"""``sidetune classify`` / ``load_recognition_model(run).classify(video)`` on a real video."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sidetune.cli import main
from sidetune.errors import SidetuneError
from sidetune.recognition.inference import load_recognition_model, parse_views
from sidetune.recognition.recipe import build_eval_set, train
from sidetune.recognition.synthetic import CLASS_NAMES, generate
from tests.shared_data import shared_path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("classify")
    generate(tmp / "data", train_per_class=1, val_per_class=1, frames=12, size=32, seed=0)
    overrides = [f"data.root={tmp / 'data'}", f"run_dir={tmp / 'run'}", "train.epochs=1",
                 "train.batch_size=3", "model.side_dim=32", "data.num_segments=4",
                 "model.num_local_frames=3", "eval.protocol=k400"]  # fmt: skip
    assert train("tds_clip_synthetic", overrides) == 0
    return tmp / "run"


def test_classify_bikes_top5_equals_evaluate_views(run: Path, tmp_path: Path) -> None:
    video = shared_path("data", "videos", "bikes.mp4")
    model = load_recognition_model(run)
    rows = model.classify(video, views=(3, 2))
    assert len(rows) == 5 and [r["prob"] for r in rows] == sorted(
        (r["prob"] for r in rows), reverse=True
    )
    assert {r["name"] for r in rows} <= set(CLASS_NAMES)
    # the same 6 views as `sidetune evaluate` takes: softmax of each view, averaged
    (tmp_path / "one.txt").write_text(f"{video} 0\n")
    cfg = model.cfg
    cfg.eval.num_crops, cfg.eval.num_clips = 3, 2
    ds = build_eval_set(cfg, str(tmp_path / "one.txt"))
    assert ds is not None
    frames = ds[0]["frames"]
    assert frames.shape[:3] == (6, 4, 3)
    with torch.no_grad():
        probs = model.model(frames).softmax(-1).mean(0)
    assert [r["label"] for r in rows] == probs.topk(5).indices.tolist()
    torch.testing.assert_close(torch.tensor([r["prob"] for r in rows]), probs.topk(5).values)
    # one view differs from six
    assert model.classify(video, views=(1, 1))[0]["prob"] != rows[0]["prob"]


def test_cli_classify_prints_the_api_result(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = shared_path("data", "videos", "bikes.mp4")
    assert main(["classify", "--run", str(run), "--video", str(video), "--views", "3x2"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = load_recognition_model(run).classify(video, views=(3, 2))
    assert out[0].endswith("3 crop(s) x 2 clip(s), k400 views") and len(out) == 6
    assert out[1] == f" 1. {rows[0]['prob']:.4f}  {rows[0]['name']} ({rows[0]['label']})"
    assert main(["classify", "--run", str(run), "--video", "missing.mp4"]) == 1
    assert "missing.mp4: video not found" in capsys.readouterr().err


def test_parse_views() -> None:
    assert parse_views("3x2") == (3, 2) and parse_views("1X4") == (1, 4)
    with pytest.raises(SidetuneError, match="CROPSxCLIPS"):
        parse_views("3")
    with pytest.raises(SidetuneError, match="crops must be 1 or 3"):
        parse_views("2x2")
