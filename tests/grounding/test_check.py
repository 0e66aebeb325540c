"""Bad grounding data is found before training: `sidetune check`, the cheap checks of `train`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sidetune.cli import main
from sidetune.config import ConfigError
from sidetune.features.store import FeatureError, load_video_features, save_video_features
from sidetune.grounding import load_grounding_model
from sidetune.grounding.data import DataError, GroundingDataset
from sidetune.grounding.recipe import load_grounding_config, run_training
from tests.grounding.test_e2e import make_synthetic, tiny_overrides


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture
def data(pristine: Path, tmp_path: Path) -> Path:
    """A private copy each test may damage."""
    return Path(shutil.copytree(pristine, tmp_path / "data"))


def _first_vid(data: Path, split: str = "train") -> str:
    return str(json.loads((data / f"{split}.jsonl").read_text().splitlines()[0])["vid"])


def test_check_passes_clean_data(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["check", "sdst_synthetic", *tiny_overrides(data, tmp_path / "run"), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "video feature files: 24" in out and "OK: no problems found" in out


def test_check_lists_every_kind_of_problem(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vids = sorted(p.stem for p in (data / "video_features").iterdir())
    feats = load_video_features(data / "video_features", vids[0])
    bad = feats.astype(np.float32)
    bad[1, 3, 5] = np.nan
    np.savez(data / "video_features" / f"{vids[0]}.npz", features=bad)  # NaN
    save_video_features(data / "video_features", vids[1], feats[:, :, :8])  # odd dimension
    save_video_features(data / "video_features", vids[2], feats[:, :3])  # cut short
    (data / "text_features" / "qid3.npz").unlink()  # missing
    with open(data / "val.jsonl", "a") as fh:
        fh.write('{"qid": 999, "query": "q", "vid": "x", "duration": 10}\n'[:30] + "\n")
    argv = ["check", "sdst_synthetic", *tiny_overrides(data, tmp_path / "run"), "--no-progress"]
    assert main([*argv, "--show", "50"]) == 1
    out = capsys.readouterr().out
    assert "FAILED: " in out
    assert f"{vids[0]}.npz: 1 non-finite value(s)" in out and "[1, 3, 5]" in out
    assert f"{vids[1]}.npz: video_dim 8, while 22 other video file(s) give 16; re-extract it" in out
    assert f"{vids[2]}.npz: 3 clips x 2 s cover 6 s" in out
    assert "no text features for query qid=3 in" in out
    assert "val.jsonl:7: field '<json>': invalid JSON" in out
    assert "set model.video_dim" not in out  # the majority fits the config


def test_check_finds_config_mismatch_and_best_metric(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    over = [*tiny_overrides(data, tmp_path / "run"), "model.video_dim=32", "best_metric=R1@0.7"]
    assert main(["check", "sdst_synthetic", *over, "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "model.video_dim=32 but 24 of 24 video file(s) give 16; set model.video_dim=16" in out
    assert "best_metric 'R1@0.7' is not a qvhighlights metric" in out


def test_one_odd_first_file_is_named_not_the_config(data: Path, tmp_path: Path) -> None:
    """The reported case: a bad *first* file used to say "set model.video_dim=32"."""
    vid = _first_vid(data)
    feats = load_video_features(data / "video_features", vid)
    save_video_features(data / "video_features", vid, np.concatenate([feats, feats], axis=-1))
    cfg = load_grounding_config("sdst_synthetic", tiny_overrides(data, tmp_path / "run"))
    with pytest.raises(
        DataError,
        match=rf"disagree on video_dim: 7 of 8 sampled give 16, .*{vid}\.npz \(qid 0\) gives 32; re-extract",
    ):
        run_training(cfg)


def test_all_files_differing_from_the_config_still_name_the_key(data: Path, tmp_path: Path) -> None:
    over = [*tiny_overrides(data, tmp_path / "run"), "model.text_dim=8"]
    with pytest.raises(ConfigError, match=r"all \d+ sampled files agree\); set model.text_dim=12"):
        run_training(load_grounding_config("sdst_synthetic", over))


def test_one_single_layer_video_file_names_both_files(data: Path, tmp_path: Path) -> None:
    """A [T, F] video among [K, T, F] files: the message names the files, not only text_layers."""
    cfg = load_grounding_config("sdst_synthetic", tiny_overrides(data, tmp_path / "run"))
    ds = GroundingDataset(cfg.data, "train")
    vid = ds.records[3].vid
    save_video_features(
        data / "video_features", vid, load_video_features(data / "video_features", vid)[-1]
    )
    with pytest.raises(DataError) as err:
        ds[3]
    msg = str(err.value)
    assert f"{vid}.npz (shape (20, 16))" in msg and "re-extract it" in msg
    assert f"qid{ds.records[3].qid}.npz" in msg


def test_best_metric_is_checked_before_the_first_epoch(data: Path, tmp_path: Path) -> None:
    over = [*tiny_overrides(data, tmp_path / "run"), "best_metric=mIoU", "train.epochs=1"]
    with pytest.raises(Exception, match="best_metric 'mIoU' is not among the evaluation metrics"):
        run_training(
            load_grounding_config("sdst_synthetic", over),
            callbacks=[lambda s: pytest.fail("training started")],
        )


def test_nan_training_features_name_the_file(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vid = _first_vid(data)
    feats = load_video_features(data / "video_features", vid).astype(np.float32)
    feats[0, 2, 1] = np.inf
    np.savez(data / "video_features" / f"{vid}.npz", features=feats)
    assert main(["train", "sdst_synthetic", *tiny_overrides(data, tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert f"{vid}.npz: 1 non-finite value(s)" in err and "[0, 2, 1]" in err


def test_python_api_rejects_non_finite_inputs(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "sdst_synthetic", *tiny_overrides(data, run, epochs=1)]) == 0
    model = load_grounding_model(run)
    video = np.zeros((2, 10, 16), dtype=np.float32)
    video[1, 4, 0] = np.nan
    with pytest.raises(FeatureError, match=r"video_feats: 1 non-finite .* index \[1, 4, 0\]"):
        model.predict(video, np.zeros((2, 5, 12), dtype=np.float32))


def test_nan_validation_features_are_found_before_training(data: Path, tmp_path: Path) -> None:
    vid = _first_vid(data, "val")
    feats = load_video_features(data / "video_features", vid).astype(np.float32)
    feats[1, 0, 0] = np.nan
    np.savez(data / "video_features" / f"{vid}.npz", features=feats)
    cfg = load_grounding_config("sdst_synthetic", tiny_overrides(data, tmp_path / "run"))
    with pytest.raises(FeatureError, match=rf"{vid}\.npz: 1 non-finite"):
        run_training(cfg, callbacks=[lambda s: pytest.fail("training started")])


def test_predict_warns_about_a_stale_best(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run of an older version killed while writing best/: readers of best say so."""
    from sidetune.engine import load_meta, save_checkpoint

    run = tmp_path / "run"
    assert main(["train", "sdst_synthetic", *tiny_overrides(data, run, epochs=1)]) == 0
    capsys.readouterr()
    best = run / "checkpoints" / "best"
    model = load_grounding_model(run).model
    save_checkpoint(best, model, {**load_meta(best), "epoch": 0})
    load_grounding_model(run)
    err = capsys.readouterr().err
    assert f"{best} holds epoch 0" in err and "records the best at epoch 1" in err
