"""Rendered synthetic grounding videos: layout, pixels, grammar, files."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from sidetune.backbones import create_text_backbone
from sidetune.cli import main
from sidetune.grounding.annotations import load_annotations
from sidetune.grounding.render import (
    COLOURS,
    DIRECTIONS,
    SHAPES,
    TEMPLATES,
    RenderConfig,
    RenderError,
    layout_video,
    query_text,
    render_frames,
)
from sidetune.video.decode import probe, read_frames


def test_layout_is_deterministic_and_consistent() -> None:
    cfg = RenderConfig(videos=10, seed=3)
    a, b = layout_video(cfg, 4, 0), layout_video(cfg, 4, 0)
    assert a == b and layout_video(RenderConfig(videos=99, seed=3), 4, 0) == a
    for i in range(10):
        v = layout_video(cfg, i, 0)
        spans = sorted((e.start, e.end) for e in v.events)
        assert all(
            s1 >= e0 + 1 for (_, e0), (s1, _) in itertools.pairwise(spans)
        )  # gaps, no overlap
        assert spans[-1][1] * 2.0 <= v.duration
        for q in v.queries:
            mine = [e for e in v.events if e.concept == q.concept]
            assert q.windows == [[e.start * 2.0, e.end * 2.0] for e in mine]
            assert (
                len(q.relevant_clip_ids)
                == len(q.saliency_scores)
                == sum(e.end - e.start for e in mine)
            )
            colour, shape, direction = q.concept
            assert colour in q.query and shape in q.query and direction in q.query
            # Distractors never repeat a target; hard negatives change only the colour.
            others = [e.concept for e in v.events if e.concept != q.concept]
            assert q.concept not in others


def test_pixels_show_the_scripted_event() -> None:
    cfg = RenderConfig(videos=3, size=32, fps=4)
    v = layout_video(cfg, 0, 0)
    frames = render_frames(cfg, v)
    assert frames.shape == (int(v.duration * 4), 32, 32, 3)
    ev = v.events[0]
    rgb = np.asarray(COLOURS[ev.concept[0]])
    inside = frames[ev.start * 8 : ev.end * 8]
    hits = (np.abs(inside.astype(int) - rgb).sum(-1) == 0).any(axis=(1, 2))
    assert hits.mean() > 0.7  # visible in most frames (it wraps around the edges)
    outside = np.ones(len(frames), bool)
    for e in v.events:
        outside[e.start * 8 : e.end * 8] = False
    assert (frames[outside] == frames[outside][0, 0, 0]).all()  # empty background between events
    # The shape moves in its direction: the centroid shifts the right way between frames.
    mask = np.abs(inside.astype(int) - rgb).sum(-1) == 0
    dy, dx = DIRECTIONS[ev.concept[2]]
    ys, xs = np.nonzero(mask[0])
    ys2, xs2 = np.nonzero(mask[1])
    if (
        len(xs)
        and len(xs2)
        and abs((xs2.mean() - xs.mean()) * dx + (ys2.mean() - ys.mean()) * dy) < 16
    ):
        assert (xs2.mean() - xs.mean()) * dx + (ys2.mean() - ys.mean()) * dy > 0


def test_every_grammar_word_is_in_the_tiny_vocabulary() -> None:
    text = create_text_backbone("internvideo2-text-tiny")
    unk = text.tokenizer.convert_tokens_to_ids("[UNK]")
    for t in range(len(TEMPLATES)):
        for c in COLOURS:
            for s in SHAPES:
                for d in DIRECTIONS:
                    ids = text.tokenize([query_text((c, s, d), t)])["input_ids"][0]
                    assert unk not in ids.tolist()


def test_cli_render_writes_videos_and_annotations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = tmp_path / "r"
    assert main(["synth", "grounding", "--render", "--out", str(out), "--videos", "6",
                 "--min-duration", "20", "--max-duration", "24"]) == 0  # fmt: skip
    assert "rendered" in capsys.readouterr().out
    meta = json.loads((out / "rendered.json").read_text())
    rows = []
    for split in ("train", "val", "test"):
        ann = load_annotations(out / f"{split}.jsonl")
        rows += ann.records
    assert sum(meta["queries"].values()) == len(rows) and meta["videos"]["test"] >= 1
    for rec in rows:
        info = probe(out / "videos" / f"{rec.vid}.mp4")
        assert info.duration == pytest.approx(rec.duration, abs=0.3) and info.width == 64
    first = read_frames(out / "videos" / f"{rows[0].vid}.mp4", [0])
    assert first.shape == (1, 64, 64, 3)
    with pytest.raises(RenderError, match="--size"):
        RenderConfig(size=15).validate()
