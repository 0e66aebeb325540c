"""Sharded extraction under torchrun (2 CPU ranks, gloo) equals a 1-process run bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sidetune.backbones import create_backbone, create_text_backbone
from sidetune.backbones.internvideo2 import InternVideo2Backbone
from sidetune.backbones.text import InternVideo2Text
from sidetune.cli import main
from sidetune.features.extract import shard
from tests.backbones.test_text import make_vocab
from tests.shared_data import shared_path
from tests.video.test_decode import make_video

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def real_workspace(tmp_path: Path) -> dict[str, Path]:
    """Two real clips (linked from ../shared), three generated ones, one broken file."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("bikes", "bigbuckbunny"):
        (videos / f"{name}.mp4").symlink_to(shared_path("data", "videos", f"{name}.mp4"))
    for i, seconds in enumerate((3, 2, 5)):
        make_video(videos / f"gen{i}.mp4", seconds=seconds, fps=4)
    (videos / "broken.mp4").write_bytes(b"\x00garbage" * 64)
    vids = ["bikes", "gen0", "bigbuckbunny", "gen1", "broken", "gen2", "absent"]
    words = ["a man", "the dog runs", "a man cooks in the kitchen", "the park", "a dog"]
    rows = [
        {"qid": 10 + i, "vid": vid, "query": words[i % len(words)]} for i, vid in enumerate(vids)
    ]
    ann = tmp_path / "ann.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    vision = create_backbone("internvideo2-tiny")
    text = create_text_backbone("internvideo2-text-tiny")
    assert isinstance(vision, InternVideo2Backbone) and isinstance(text, InternVideo2Text)
    sd = {f"vision_encoder.{k}": v for k, v in vision.encoder.state_dict().items()}
    sd.update({f"text_encoder.bert.{k}": v for k, v in text.bert.state_dict().items()})
    torch.save(sd, tmp_path / "ckpt.pt")
    (tmp_path / "vocab").mkdir()
    make_vocab(tmp_path / "vocab")
    return {"root": tmp_path, "videos": videos, "ann": ann}


def _args(ws: dict[str, Path], out: Path) -> list[str]:
    root = ws["root"]
    return [
        "extract", "--backbone", "internvideo2-tiny", "--checkpoint", str(root / "ckpt.pt"),
        "--videos", str(ws["videos"]), "--annotations", str(ws["ann"]), "--out", str(out),
        "--tokenizer", str(root / "vocab"), "--layers", "1,4", "--frames-per-clip", "2",
        "--batch-size", "3", "--text-batch-size", "2", "--device", "cpu", "--no-progress",
    ]  # fmt: skip


def _torchrun(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.run(
        [*cmd, "-m", "sidetune.cli", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _files(out: Path) -> dict[str, dict[str, np.ndarray]]:
    found = {}
    for p in sorted(out.rglob("*.npz")):
        with np.load(p) as z:
            found[str(p.relative_to(out))] = {k: z[k] for k in z.files}
    return found


def test_shard_is_a_partition() -> None:
    items = list(range(11))
    parts = [shard(items, r, 3) for r in range(3)]
    assert sorted(x for p in parts for x in p) == items and parts[1] == [1, 4, 7, 10]


@pytest.mark.slow
def test_two_ranks_equal_one_process_bit_for_bit(real_workspace: dict[str, Path]) -> None:
    ws, root = real_workspace, real_workspace["root"]
    assert main(_args(ws, root / "one")) == 1  # "broken" and "absent" fail
    two = root / "two"
    run = _torchrun(_args(ws, two))
    assert run.returncode == 1, run.stderr[-3000:]
    assert "[rank 0/2]" in run.stdout and "[rank 1/2]" in run.stdout

    one_files, two_files = _files(root / "one"), _files(two)
    assert len(one_files) == 5 + 7  # 5 readable videos, 7 queries
    assert one_files.keys() == two_files.keys()
    for name, arrays in one_files.items():
        for key, value in arrays.items():
            assert np.array_equal(value, two_files[name][key]), name  # bit for bit
    for meta in ("extract_meta.json", "extract_failures.json"):
        assert json.loads((root / "one" / meta).read_text()) == json.loads((two / meta).read_text())
    assert set(json.loads((two / "extract_failures.json").read_text())) == {"broken", "absent"}

    # a rank that died left some files unwritten: the rerun makes exactly those, the same bits
    lost = [two / "video_features" / "bikes.npz", two / "text_features" / "qid13.npz"]
    kept = {p: p.stat().st_mtime_ns for p in two.rglob("*.npz") if p not in lost}
    for p in lost:
        p.unlink()
    run = _torchrun(_args(ws, two))
    assert run.returncode == 1, run.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    redo = _files(two)
    assert all(np.array_equal(redo[n][k], v) for n, a in one_files.items() for k, v in a.items())


def test_real_videos_in_one_process(real_workspace: dict[str, Path]) -> None:
    """bikes (640x272, 10 s, scene cut) and bigbuckbunny (1280x720, 5.28 s, audio): 5 and 3 clips."""
    ws, root = real_workspace, real_workspace["root"]
    assert main([*_args(ws, root / "one"), "--no-text"]) == 1
    feats = {
        n: _files(root / "one")[f"video_features/{n}.npz"]["features"]
        for n in ("bikes", "bigbuckbunny")
    }
    assert feats["bikes"].shape == (2, 5, 32) and feats["bigbuckbunny"].shape == (2, 3, 32)
    # the first bikes clip, by hand: frames shown at 0.5 s and 1.5 s, whole frame to 28x28
    model = create_backbone(
        "internvideo2-tiny", checkpoint=str(root / "ckpt.pt"), frames_per_clip=2
    )
    from sidetune.video.decode import read_frames

    frames = read_frames(ws["videos"] / "bikes.mp4", [12, 37])  # 25 fps: t = 0.48 s, 1.48 s
    with torch.no_grad():
        want = model.forward_intermediates(model.transform(frames)[None], [1, 4])[:, 0]
    np.testing.assert_allclose(
        feats["bikes"][:, 0].astype(np.float32), want.numpy(), atol=1e-2, rtol=1e-2
    )
