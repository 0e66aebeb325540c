"""Video lists, labels CSV, segment sampling, dataset reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sidetune.recognition.data import (
    VideoDataset,
    VideoListError,
    collate_videos,
    eval_segment_indices,
    load_label_names,
    local_windows,
    parse_video_list,
    train_segment_indices,
)
from sidetune.recognition.transforms import EvalTransform, TrainTransform


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_parse_both_formats(tmp_path: Path) -> None:
    frames = parse_video_list(_write(tmp_path / "a.txt", "# comment\nvid1 40 3\n\nvid2 12 0\n"))
    assert [(r.path.name, r.num_frames, r.label) for r in frames] == [
        ("vid1", 40, 3),
        ("vid2", 12, 0),
    ]
    assert frames[0].path == tmp_path / "vid1"  # relative to the list's directory
    videos = parse_video_list(_write(tmp_path / "b.txt", "x/1.webm 5\nx/2.webm 7\n"), root="/data")
    assert videos[1].path == Path("/data/x/2.webm") and videos[1].num_frames is None
    assert videos[1].source.endswith("b.txt:2")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a 1\nb 2 3 4\n", r"b\.txt:2: expected 'path label'"),
        ("a 1\nb 20 3\n", r"b\.txt:2: 3 fields but this list holds video rows"),
        ("a x\n", r"b\.txt:1: label 'x' is not an integer"),
        ("a 10 2\nb ten 2\n", r"b\.txt:2: num_frames 'ten'"),
        ("a 0 2\n", r"b\.txt:1: num_frames must be >= 1"),
        ("a 9\n", r"b\.txt:1: label 9 out of range \(num_classes=5\)"),
        ("# only comments\n", r"b\.txt: no videos"),
    ],
)
def test_parse_errors_name_file_and_line(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(VideoListError, match=match):
        parse_video_list(_write(tmp_path / "b.txt", text), num_classes=5)


def test_missing_list_file(tmp_path: Path) -> None:
    with pytest.raises(VideoListError, match="not found"):
        parse_video_list(tmp_path / "nope.txt")


def test_label_csv(tmp_path: Path) -> None:
    names = load_label_names(_write(tmp_path / "l.csv", 'id,name\n1,"b, c"\n0,a\n'))
    assert names == ["a", "b, c"]
    with pytest.raises(VideoListError, match=r"l2\.csv: ids must be 0\.\.1"):
        load_label_names(_write(tmp_path / "l2.csv", "0,a\n2,b\n"))
    with pytest.raises(VideoListError, match=r"l3\.csv:3: duplicate id 0"):
        load_label_names(_write(tmp_path / "l3.csv", "id,name\n0,a\n0,b\n"))


def test_train_indices_random_within_segments() -> None:
    rng = np.random.default_rng(0)
    num_frames, t = 50, 8
    ticks = (np.arange(t + 1) * num_frames) // t
    seen = set()
    for _ in range(200):
        idx = train_segment_indices(num_frames, t, rng)
        assert idx.shape == (t,)
        assert np.all(idx >= ticks[:-1]) and np.all(idx < ticks[1:])
        seen.add(tuple(idx))
    assert len(seen) > 100  # random, not fixed


def test_train_indices_short_video_uses_every_frame() -> None:
    idx = train_segment_indices(5, 8, np.random.default_rng(0))
    assert idx.shape == (8,) and set(range(5)) <= set(idx.tolist()) and np.all(np.diff(idx) >= 0)


def test_eval_indices_centre_and_clips() -> None:
    assert eval_segment_indices(80, 8).tolist() == [[5, 15, 25, 35, 45, 55, 65, 75]]
    two = eval_segment_indices(90, 3, num_clips=2)  # segments of 30: fractions 1/3, 2/3
    assert two.tolist() == [[10, 40, 70], [20, 50, 80]]
    assert eval_segment_indices(3, 8).max() <= 2


def test_local_windows_clamped_never_wrap() -> None:
    w = local_windows(np.array([0, 1, 5, 9]), 5, 10)
    assert w.tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [3, 4, 5, 6, 7], [7, 8, 9, 9, 9]]
    assert local_windows(np.array([[4]]), 1, 10).shape == (1, 1, 1)


def _frame_folder(root: Path, name: str, n: int, size: int = 20) -> None:
    d = root / name
    d.mkdir()
    for i in range(n):
        Image.fromarray(np.full((size, size + 4, 3), i * 10, dtype=np.uint8)).save(
            d / f"{i + 1:05d}.jpg"
        )


def test_frame_folder_dataset_reads_only_sampled_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _frame_folder(tmp_path, "v0", 16)
    records = parse_video_list(_write(tmp_path / "list.txt", "v0 16 2\n"))
    opened: list[str] = []
    real_open = Image.open

    def spy(path: object, *a: object, **k: object) -> Image.Image:
        opened.append(Path(str(path)).name)
        return real_open(path, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(Image, "open", spy)
    ds = VideoDataset(
        records, num_segments=4, num_local=3, train=False, transform=EvalTransform(16), num_clips=1
    )
    item = ds[0]
    assert item["frames"].shape == (1, 4, 3, 3, 16, 16) and item["label"] == 2
    # centres 2, 6, 10, 14 (0-based) with windows of 3 -> 12 distinct files, nothing else
    assert sorted(opened) == sorted(
        f"{i + 1:05d}.jpg" for i in [1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15]
    )
    # frame i has value 10 * i: the local window is in temporal order
    raw = item["frames"][
        0, 1, :, 0, 0, 0
    ]  # segment 1: frames 5, 6, 7 (normalised with mean 0 std 1)
    torch.testing.assert_close(raw, torch.tensor([50.0, 60.0, 70.0]) / 255.0, atol=2e-2, rtol=0)


def test_train_dataset_and_collate(tmp_path: Path) -> None:
    _frame_folder(tmp_path, "v0", 12)
    _frame_folder(tmp_path, "v1", 7)
    records = parse_video_list(_write(tmp_path / "list.txt", "v0 12 1\nv1 7 0\n"))
    ds = VideoDataset(
        records,
        num_segments=4,
        num_local=5,
        train=True,
        transform=TrainTransform(16, rand_augment_ops=1),
    )
    batch = collate_videos([ds[0], ds[1]])
    assert batch["frames"].shape == (2, 4, 5, 3, 16, 16)
    assert batch["label"].tolist() == [1, 0] and batch["index"].tolist() == [0, 1]


def test_missing_frame_names_the_list_row(tmp_path: Path) -> None:
    _frame_folder(tmp_path, "v0", 4)
    records = parse_video_list(_write(tmp_path / "list.txt", "v0 30 1\n"))  # claims 30 frames
    ds = VideoDataset(
        records, num_segments=4, num_local=1, train=False, transform=EvalTransform(16)
    )
    with pytest.raises(VideoListError, match=r"list\.txt:1: cannot read frame"):
        ds[0]


@pytest.mark.parametrize("train", [True, False])
def test_video_files_are_decoded_at_the_size_the_transform_needs(
    tmp_path: Path, train: bool
) -> None:
    """A 640x360 source with 32-px inputs: frames arrive at short side 36 (32 * 256 / 224)."""
    from tests.video.test_decode import make_video

    make_video(tmp_path / "v.mp4", seconds=1, fps=4, size=(640, 360))
    records = parse_video_list(_write(tmp_path / "list.txt", "v.mp4 0\n"))
    tf = TrainTransform(32) if train else EvalTransform(32)
    ds = VideoDataset(records, num_segments=2, num_local=1, train=train, transform=tf)
    assert ds.decode_short_side == 36
    assert tuple(ds.read(records[0], [0, 2]).shape) == (2, 36, 64, 3)
    x = ds[0]["frames"]
    assert x.shape[-2:] == (32, 32)
