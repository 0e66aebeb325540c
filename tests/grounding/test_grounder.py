"""``Grounder`` / ``sidetune ground``: real mp4s through the tiny backbones, cache, bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sidetune.backbones import create_backbone
from sidetune.cli import main
from sidetune.config import save_config
from sidetune.engine import save_checkpoint
from sidetune.errors import SidetuneError
from sidetune.features.extract import extract_video_features
from sidetune.grounding.grounder import GroundError
from sidetune.grounding.inference import Grounder, GroundingResult, Moment
from sidetune.grounding.model import build_sdst
from sidetune.grounding.runs import load_grounding_config
from sidetune.video.decode import VideoDecodeError
from sidetune.video.sampling import num_clips_for
from tests.shared_data import shared_path

TINY_META = {
    "backbone": "internvideo2-tiny",
    "clip_length": 2.0,
    "frames_per_clip": 4,
    "pool": "mean",
    "layers": [1, 2, 3, 4],
    "video_dim": 64,
    "text_backbone": "internvideo2-text-tiny",
    "text_layers": [0, 1, 2, 3],
    "text_dim": 32,
    "transform": "eval",
    "gelu": "erf",
    "weights": "fp32",
    "text_format": "[CLS] X",
    "pre_text": False,
}  # fmt: skip  (what today's `sidetune extract` records)


def make_run(root: Path, max_clips: int = 8, meta: dict | None = TINY_META) -> Path:
    """An (untrained) SDST run whose features came from the tiny InternVideo2 towers."""
    cfg = load_grounding_config(
        "sdst_rendered", [f"run_dir={root}", f"data.max_clips={max_clips}", "model.num_queries=4"]
    )
    save_config(cfg, root / "config.yaml")
    torch.manual_seed(0)
    save_checkpoint(root / "checkpoints" / "last", build_sdst(cfg.model), {"epoch": 0, "step": 0})
    if meta is not None:
        (root / "extract_meta.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def grounder(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Grounder:
    return Grounder.from_run(run_dir, cache_dir=tmp_path_factory.mktemp("cache"))


def _check_result(r: GroundingResult, duration: float) -> None:
    assert r.clip_len == 2.0 and r.duration == pytest.approx(duration, abs=0.05)
    assert len(r.saliency) == num_clips_for(duration, 2.0)
    assert r.moments and all(isinstance(m, Moment) for m in r.moments)
    assert all(0.0 <= m.start < m.end <= duration + 1e-6 for m in r.moments)
    scores = [m.score for m in r.moments]
    assert scores == sorted(scores, reverse=True)
    d = r.to_dict()
    assert json.loads(json.dumps(d)) == d and len(d["moments"][0]) == 3


def test_ground_real_video_matches_extract_and_caches(grounder: Grounder, run_dir: Path) -> None:
    video = shared_path("data", "videos", "bikes.mp4")
    results = grounder.ground(video, ["the red circle moves left", "a blue square"])
    assert [r.query for r in results] == ["the red circle moves left", "a blue square"]
    for r in results:
        _check_result(r, 10.0)
    assert results[0].saliency != results[1].saliency  # the query matters
    # The features are exactly what `sidetune extract` stores for the run's settings.
    feats, _duration = grounder.video_features(video)
    ref = extract_video_features(
        create_backbone("internvideo2-tiny"), video, clip_length=2.0, frames_per_clip=4,
        layers=[1, 2, 3, 4], pool="mean", batch_size=16, device=torch.device("cpu"),
    )  # fmt: skip
    np.testing.assert_allclose(feats, ref, rtol=1e-5, atol=1e-6)
    assert grounder.last_cache_hit  # second look at the same file: memory
    # A fresh Grounder on the same cache: disk hit, same answer, no decoding.
    again = Grounder.from_run(run_dir, cache_dir=grounder.cache.root)
    seen: list[str] = []
    [r2] = again.ground(video, "the red circle moves left", progress=lambda s, f: seen.append(s))
    assert again.last_cache_hit and r2.to_dict() == results[0].to_dict()
    assert seen[0] == "decode+extract" and "text" in seen and seen[-1] == "model"


def test_ground_video_with_audio_and_partial_last_clip(grounder: Grounder) -> None:
    video = shared_path("data", "videos", "bigbuckbunny.mp4")  # 5.28 s, AAC audio stream
    [r] = grounder.ground(video, "a white triangle goes up")
    _check_result(r, 5.28)
    assert len(r.saliency) == 3  # 2 + 2 + 1.28 s


def test_long_video_slides_windows_of_the_trained_length(tmp_path: Path) -> None:
    """A run trained on 2-clip videos sees the 5-clip video through 4 windows (stride 1)."""
    run = make_run(tmp_path / "run", max_clips=2)
    g = Grounder.from_run(run, cache_dir=tmp_path / "cache")
    video = shared_path("data", "videos", "bikes.mp4")
    [r] = g.ground(video, "the red circle moves left")
    _check_result(r, 10.0)
    spans = {(m.start, m.end) for m in r.moments}
    assert any(s >= 4.0 for s, _ in spans)  # moments from later windows, in absolute time
    assert all(e - s <= 4.0 + 1e-6 for s, e in spans)  # no moment longer than one window


def test_cli_ground_writes_json_and_plot(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    video = shared_path("data", "videos", "bikes.mp4")
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    code = main([
        "ground", "--run", str(run_dir), "--video", str(video), "--query", "the red circle moves left",
        "--out", str(out), "--plot", str(png), "--gt", "2", "6", "--cache-dir", str(tmp_path / "c"),
    ])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "top moments" in text and "highlight clips" in text
    data = json.loads(out.read_text())
    assert data["settings"]["backbone"] == "internvideo2-tiny"
    assert len(data["results"][0]["saliency"]) == 5
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("queries", "match"),
    [([""], "empty query"), (["   "], "empty query"), (["red " * 60], "limit of 40")],
)
def test_bad_queries_fail_before_decoding(grounder: Grounder, queries: list[str], match: str) -> None:  # fmt: skip
    with pytest.raises(GroundError, match=match):
        grounder.ground(Path("/nonexistent.mp4"), queries)


def test_bad_videos_name_the_file(grounder: Grounder, tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty"):
        grounder.ground(empty, "a red circle")
    with pytest.raises(VideoDecodeError, match="no such file"):
        grounder.ground(tmp_path / "missing.mp4", "a red circle")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(VideoDecodeError, match=re.escape(str(junk))):
        grounder.ground(junk, "a red circle")
    src = shared_path("data", "videos", "bikes.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src[: len(src) // 3])
    with pytest.raises(VideoDecodeError, match=r"cut\.mp4"):
        grounder.ground(cut, "a red circle")
    assert not any(grounder.cache.root.glob("*.tmp"))  # no half-written cache entry


def test_run_problems_are_clear(tmp_path: Path, run_dir: Path) -> None:
    with pytest.raises(SidetuneError, match=r"config\.yaml"):
        Grounder.from_run(tmp_path / "nowhere")
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "config.yaml", bare / "config.yaml")
    with pytest.raises(SidetuneError, match="no checkpoint"):
        Grounder.from_run(bare)
    with pytest.raises(GroundError, match="video_dim=64"):  # adaptive pooling gives 32-d features
        Grounder.from_run(run_dir, pool="adaptive", cache_dir=tmp_path)
    no_meta = make_run(tmp_path / "nometa", meta=None)
    with pytest.raises(GroundError, match="--backbone"):
        Grounder.from_run(no_meta)
    g = Grounder.from_run(
        no_meta, backbone="internvideo2-tiny", pool="mean", cache_dir=tmp_path / "c"
    )
    assert g.settings.clip_length == 2.0 and g.settings.layers is None
    with pytest.raises(GroundError, match="--checkpoint"):
        Grounder.from_run(no_meta, backbone="internvideo2-1b")


def test_cli_bad_input_exits_1_and_writes_nothing(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = tmp_path / "r.json"
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 64)
    code = main(["ground", "--run", str(run_dir), "--video", str(bad), "--query", "a red circle",
                 "--out", str(out), "--cache-dir", str(tmp_path / "c")])  # fmt: skip
    assert code == 1 and not out.exists()
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.mp4" in err


def test_overrides_replace_the_recorded_settings(run_dir: Path) -> None:
    from sidetune.grounding.grounder import extractor_settings

    s = extractor_settings(run_dir, 2.0, {"layers": [2, 3], "pool": None})
    assert s.backbone == "internvideo2-tiny" and s.layers == [2, 3] and s.pool == "mean"
    assert s.text_backbone == "internvideo2-text-tiny"
    other = extractor_settings(run_dir, 2.0, {"backbone": "clip-tiny"})
    assert other.backbone == "clip-tiny" and other.text_backbone is None  # its own text tower
    with pytest.raises(GroundError, match="unknown backbone option"):
        extractor_settings(run_dir, 2.0, {"colour": "red"})


def test_from_run_rebuilds_the_recorded_preprocessing(tmp_path: Path) -> None:
    """`ground` must see what `extract` saw: transform, GELU, text format, caption normalisation."""
    meta = {
        **TINY_META, "transform": "demo", "gelu": "tanh", "text_format": "[CLS] X [SEP]",
        "pre_text": True,
    }  # fmt: skip
    g = Grounder.from_run(make_run(tmp_path / "run", meta=meta), cache_dir=tmp_path / "cache")
    assert g.video_backbone.transform.kind == "demo"
    assert g.video_backbone.encoder.blocks[0].mlp.act.approximate == "tanh"
    assert g.text_backbone.add_sep and g.text_backbone.normalize_text
    # Settings that change the features change the cache key.
    assert (
        g.settings.cache_settings()
        != Grounder.from_run(
            make_run(tmp_path / "run2"), cache_dir=tmp_path / "cache"
        ).settings.cache_settings()
    )


def test_from_run_reads_legacy_metadata_with_the_old_defaults(tmp_path: Path) -> None:
    """A run whose extract_meta.json predates the preprocessing keys was made with centre crop
    and ``[CLS] X [SEP]`` text, as `sidetune extract` did then."""
    legacy = {k: v for k, v in TINY_META.items()
              if k not in ("transform", "gelu", "weights", "text_format", "pre_text")}  # fmt: skip
    g = Grounder.from_run(make_run(tmp_path / "run", meta=legacy), cache_dir=tmp_path / "cache")
    assert g.video_backbone.transform.kind == "crop"
    assert g.text_backbone.add_sep and not g.text_backbone.normalize_text
