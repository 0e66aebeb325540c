"""End-to-end extraction on generated videos with tiny backbones: layout, values, resume, failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sidetune.backbones import create_backbone, create_text_backbone
from sidetune.backbones.internvideo2 import InternVideo2Backbone
from sidetune.backbones.text import InternVideo2Text
from sidetune.cli import main
from sidetune.features.extract import (
    ExtractConfig,
    ExtractError,
    extract_video_features,
    index_videos,
    prefetch,
    read_queries,
    resolve_clip_length,
    run_extraction,
    text_layer_choice,
)
from sidetune.features.store import load_text_features, load_video_features
from sidetune.video.decode import read_frames
from sidetune.video.sampling import clip_sample_times, frames_shown_at, num_clips_for
from tests.backbones.test_text import make_vocab
from tests.video.test_decode import make_video

VID_A = "NUsG9BgSes0_210.0_360.0"  # QVHighlights-style name with dots
VID_B = "clipB"


@pytest.fixture
def workspace(tmp_path: Path) -> dict[str, Path]:
    videos = tmp_path / "videos"
    videos.mkdir()
    make_video(videos / f"{VID_A}.mp4", seconds=5, fps=5)  # 3 clips of 2 s
    make_video(videos / f"{VID_B}.webm", seconds=2, fps=4, codec="libvpx")  # 1 clip
    (videos / "broken.mp4").write_bytes(b"\x00\x01garbage" * 100)
    (videos / "notes.txt").write_text("not a video")
    rows = [
        {"qid": 1, "vid": VID_A, "query": "a man cooks in the kitchen"},
        {"qid": 2, "vid": VID_A, "query": "a dog runs"},
        {"qid": 3, "vid": VID_B, "query": "the park"},
        {"qid": 4, "vid": "broken", "query": "a man"},
        {"qid": 5, "vid": "absent", "query": "the dog"},
    ]
    ann = tmp_path / "ann.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    # one stage-2 style checkpoint holding both towers
    vision = create_backbone("internvideo2-tiny")
    text = create_text_backbone("internvideo2-text-tiny")
    assert isinstance(vision, InternVideo2Backbone) and isinstance(text, InternVideo2Text)
    sd = {f"vision_encoder.{k}": v for k, v in vision.encoder.state_dict().items()}
    sd.update({f"text_encoder.bert.{k}": v for k, v in text.bert.state_dict().items()})
    ckpt = tmp_path / "stage2.pt"
    torch.save({"module": sd}, ckpt)
    (tmp_path / "vocab").mkdir()
    vocab = make_vocab(tmp_path / "vocab")
    return {"videos": videos, "ann": ann, "ckpt": ckpt, "vocab": vocab, "out": tmp_path / "out"}


def _cli(ws: dict[str, Path], *extra: str) -> int:
    return main([
        "extract", "--backbone", "internvideo2-tiny", "--checkpoint", str(ws["ckpt"]),
        "--videos", str(ws["videos"]), "--annotations", str(ws["ann"]), "--out", str(ws["out"]),
        "--tokenizer", str(ws["vocab"]), "--layers", "last2", "--frames-per-clip", "2",
        "--dataset", "qvhighlights", "--batch-size", "2", "--no-progress", *extra,
    ])  # fmt: skip


def test_extract_end_to_end_then_resume(
    workspace: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = workspace["out"]
    assert _cli(workspace) == 1  # some videos failed -> exit status 1, others written
    stdout = capsys.readouterr().out
    assert "videos: 2 extracted (4 clips" in stdout and "2 failed" in stdout

    feats_a = load_video_features(out / "video_features", VID_A)
    feats_b = load_video_features(out / "video_features", VID_B)
    assert feats_a.dtype == np.float16 and feats_a.shape == (2, 3, 32)  # [K, T, F]
    assert feats_b.shape == (2, 1, 32)
    failures = json.loads((out / "extract_failures.json").read_text())
    assert set(failures) == {"broken", "absent"}
    assert "broken.mp4: cannot decode video" in failures["broken"]
    assert "no video file absent" in failures["absent"]
    meta = json.loads((out / "extract_meta.json").read_text())
    assert meta["layers"] == [3, 4] and meta["text_layers"] == [2, 3] and meta["video_dim"] == 32
    text1 = load_text_features(out / "text_features", 1)
    assert text1.shape == (2, 8, 32)  # [CLS] a man cooks in the kitchen [SEP] -> 8 real tokens
    assert len(list((out / "text_features").glob("qid*.npz"))) == 5

    # the stored features are the backbone's on the frames shown at each clip's sample times
    backbone = create_backbone(
        "internvideo2-tiny", checkpoint=str(workspace["ckpt"]), frames_per_clip=2
    )
    video = workspace["videos"] / f"{VID_A}.mp4"
    targets = clip_sample_times(num_clips_for(5.0, 2.0), 2.0, 2, 5.0)
    idx = frames_shown_at(np.arange(25) / 5.0, targets)
    frames = read_frames(video, idx.reshape(-1).tolist()).reshape(3, 2, 48, 64, 3)
    with torch.no_grad():
        expected = backbone.forward_intermediates(backbone.transform(frames), [3, 4])
    np.testing.assert_allclose(feats_a.astype(np.float32), expected.numpy(), atol=2e-2, rtol=1e-2)

    # resume: finished files untouched, failures retried and still reported
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")}
    assert _cli(workspace) == 1
    stdout = capsys.readouterr().out
    assert "0 extracted" in stdout and "2 already done" in stdout and "5 already done" in stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")} == stamps
    assert not list(out.rglob("*.tmp"))

    # a different setting into the same directory is refused (no silent mix of features)
    assert _cli(workspace, "--pool", "mean") == 1
    assert "holds features made with other settings" in capsys.readouterr().err


def test_extract_video_features_matches_manual_batches(tmp_path: Path) -> None:
    path = make_video(tmp_path / "v.mkv", seconds=3, fps=5, codec="ffv1")
    backbone = create_backbone("internvideo2-tiny")
    kwargs = {
        "clip_length": 1.0,
        "frames_per_clip": 4,
        "layers": [1, 4],
        "pool": "cls",
        "device": torch.device("cpu"),
    }
    small = extract_video_features(backbone, path, batch_size=1, **kwargs)  # type: ignore[arg-type]
    large = extract_video_features(backbone, path, batch_size=8, **kwargs)  # type: ignore[arg-type]
    assert small.shape == (2, 3, 64)
    np.testing.assert_allclose(small, large, atol=1e-5)


def test_helpers(tmp_path: Path) -> None:
    assert resolve_clip_length("charades_sta", None) == 1.0
    assert resolve_clip_length("tacos", None) == 2.0 and resolve_clip_length(None, 0.5) == 0.5
    with pytest.raises(ExtractError, match="unknown dataset"):
        resolve_clip_length("kinetics", None)
    (tmp_path / "a.b_1.0.mkv").write_bytes(b"")
    (tmp_path / "a.b_1.0.mp4").write_bytes(b"")
    assert index_videos(tmp_path) == {"a.b_1.0": tmp_path / "a.b_1.0.mp4"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"qid": 1, "vid": "x", "query": "q"}\n{"qid": 2, "vid": "x"}\n')
    with pytest.raises(ExtractError, match=r"bad\.jsonl:2: missing field 'query'"):
        read_queries([bad])
    assert list(prefetch(iter(range(5)))) == [0, 1, 2, 3, 4]
    # video block numbers do not transfer to the 19-layer text tower: take its last K instead
    assert text_layer_choice(ExtractConfig(out=tmp_path, layers=[37, 38, 39, 40])) == [
        -4,
        -3,
        -2,
        -1,
    ]
    assert text_layer_choice(ExtractConfig(out=tmp_path, text_layers=[5])) == [5]

    def failing() -> object:
        yield 1
        raise RuntimeError("producer broke")

    with pytest.raises(RuntimeError, match="producer broke"):
        list(prefetch(failing()))  # type: ignore[arg-type]


def test_clip_backbone_without_annotations_takes_every_video(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=3, fps=5)
    make_video(videos / "b.mkv", seconds=2, fps=5, codec="ffv1")
    cfg = ExtractConfig(
        out=tmp_path / "out", videos=videos, dataset="charades", text=False, progress=False
    )
    summary = run_extraction(cfg, create_backbone("clip-tiny"))
    assert summary.videos_done == 2 and not summary.videos_failed
    assert load_video_features(tmp_path / "out" / "video_features", "a").shape == (
        3,
        3,
        16,
    )  # 3 layers x 3 s
    assert load_video_features(tmp_path / "out" / "video_features", "b").shape == (3, 2, 16)


@pytest.mark.parametrize("progress", [True, False])
def test_progress_inside_each_video(
    tmp_path: Path, progress: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bar over one video's clips (or one log line per video without bars)."""
    videos = tmp_path / "videos"
    videos.mkdir()
    make_video(videos / "a.mp4", seconds=3, fps=5)
    cfg = ExtractConfig(
        out=tmp_path / "out", videos=videos, dataset="charades", text=False, progress=progress,
        batch_size=1,
    )  # fmt: skip
    lines: list[str] = []
    run_extraction(cfg, create_backbone("clip-tiny"), log=lines.append)
    if progress:
        err = capsys.readouterr().err
        assert "\ra:   0%|          | 0/3 [" in err and "clip/s" in err  # 3 clips of video a
    else:
        assert any(x.startswith("video 1/1 a: 3 clips in ") for x in lines), lines
