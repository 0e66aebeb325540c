"""Unreadable videos are found before epoch 1: `sidetune check`, `train`, data.skip_unreadable."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from sidetune.cli import main
from sidetune.recognition.check import SkipUnreadable
from sidetune.recognition.data import VideoDataset, VideoListError, parse_video_list
from sidetune.recognition.recipe import train
from sidetune.recognition.synthetic import generate
from sidetune.recognition.transforms import EvalTransform

TINY = [
    "train.epochs=1",
    "train.batch_size=4",
    "model.side_dim=32",
    "data.num_segments=4",
    "model.num_local_frames=3",
    "train.progress=false",
    "train.tensorboard=false",
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth_rec")
    generate(out, train_per_class=2, val_per_class=1, frames=12, size=32, seed=0)
    return out


@pytest.fixture
def synth(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "data"))


def _train_videos(root: Path) -> list[Path]:
    return [r.path for r in parse_video_list(root / "train.txt", root=root)]


def test_check_clean_lists(synth: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "tds_clip_synthetic", f"data.root={synth}", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "train videos" in out and ": 12" in out and "OK: no problems found" in out


def test_check_names_unreadable_and_truncated_videos(
    synth: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    videos = _train_videos(synth)
    videos[0].write_bytes(b"not a video at all")
    data = videos[1].read_bytes()
    videos[1].write_bytes(data[: len(data) // 3])  # cut, as by an interrupted copy
    videos[2].unlink()
    assert main(["check", "tds_clip_synthetic", f"data.root={synth}", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "FAILED: 3 problem(s): 3 unreadable train video" in out
    for v in videos[:3]:
        assert str(v) in out
    assert "train.txt:1:" in out


def test_train_stops_before_epoch_one_with_the_list(synth: Path, tmp_path: Path) -> None:
    videos = _train_videos(synth)
    videos[4].write_bytes(b"garbage")
    run = tmp_path / "run"
    with pytest.raises(VideoListError) as err:
        train("tds_clip_synthetic", [f"data.root={synth}", f"run_dir={run}", *TINY])
    msg = str(err.value)
    assert "1 of 12 train videos cannot be read" in msg and str(videos[4]) in msg
    assert "data.skip_unreadable=true" in msg
    assert not run.exists()  # nothing started


def test_skip_unreadable_trains_without_them(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    videos = _train_videos(synth)
    videos[4].write_bytes(b"garbage")
    over = [f"data.root={synth}", f"run_dir={tmp_path / 'run'}", "data.skip_unreadable=true"]
    assert train("tds_clip_synthetic", [*over, *TINY]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 unreadable train video(s), 11 left" in out


def test_video_failing_mid_epoch_is_replaced_when_skipping(synth: Path) -> None:
    rows = parse_video_list(synth / "val.txt", root=synth)
    ds = VideoDataset(rows, num_segments=4, num_local=1, train=False, transform=EvalTransform(32))
    rows[1].path.write_bytes(b"broken after the start")
    with pytest.raises(VideoListError):
        ds[1]
    wrapped = SkipUnreadable(ds)
    item: dict[str, Any] = wrapped[1]
    assert item["index"] == 1 and item["label"] == rows[2].label  # the next video stands in
    assert list(wrapped.failed) == [1]
