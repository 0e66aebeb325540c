"""Rendered synthetic grounding videos: ``sidetune synth grounding --render --out DIR``.

Real mp4 files (H.264, PyAV) whose frames show scripted events, with queries from a small
grammar, so the whole path a user takes (decode -> frozen backbone -> SDST -> moments) runs on
data whose answer is known::

    DIR/videos/{vid}.mp4          the rendered videos
    DIR/{train,val,test}.jsonl    QVHighlights rows (qid, query, vid, duration, relevant_windows,
                                  relevant_clip_ids, saliency_scores of 3 annotators)
    DIR/rendered.json             the settings and each query's (colour, shape, direction)

Scene model
-----------
An *event* is one shape (``circle`` / ``square`` / ``triangle``) of one colour (``red``,
``green``, ``blue``, ``yellow``, ``white``) and a random size, moving steadily in one
direction (``left`` / ``right`` / ``up`` / ``down``) and wrapping around the frame edges, over a
span of whole 2-s clips. Each video (``min_duration``..``max_duration`` s, a dark grey
background) holds the target events of its 1-2 queries and 1-3 *distractor* events placed
without overlap; 70 % of distractors are hard negatives that differ from a target in one
in colour only (``the blue circle moves left`` next to ``the red circle moves left``): colour is
the attribute the tiny random-weight backbone of the demo can see (see :func:`_hard_negative`). A query is one of a few templates of the grammar
``the {colour} {shape} moves {direction}``; every word is in the tiny text tower's packaged
vocabulary. Saliency scores follow the QVHighlights convention (0..4 per annotator, higher in
the middle of a window). Everything is deterministic given ``--seed``; each video draws from its
own stream, so a video does not change with ``--videos``. Files are written atomically.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sidetune.errors import SidetuneError
from sidetune.utils.io import write_json, write_jsonl
from sidetune.video.encode import write_mp4

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 40, 40), "green": (40, 205, 60), "blue": (60, 100, 245),
    "yellow": (240, 225, 40), "white": (245, 245, 245),
}  # fmt: skip
SHAPES = ("circle", "square", "triangle")
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}  # fmt: skip
TEMPLATES = (
    "the {colour} {shape} moves {direction}",
    "a {colour} {shape} goes {direction}",
    "{colour} {shape} moving {direction}",
    "the {colour} {shape} slides {direction}",
)
QVH_CLIP_LENGTH = 2.0
HARD_NEGATIVE_P = 0.7
BACKGROUND = (24, 24, 28)  # dark grey: the shape's colour is what stands out


class RenderError(SidetuneError, ValueError):
    """Bad rendering settings; names the option."""


@dataclass
class RenderConfig:
    """Settings of :func:`render_benchmark` (the ``--render`` options)."""

    seed: int = 0
    videos: int = 400
    size: int = 64  # frame side in pixels (square frames)
    fps: int = 4
    speed: float = 24.0  # pixels per second
    min_duration: float = 30.0
    max_duration: float = 90.0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    clip_length: float = QVH_CLIP_LENGTH

    def validate(self) -> None:
        checks = [
            (self.videos >= 3, "--videos must be >= 3 (one per split)"),
            (self.size >= 16 and self.size % 2 == 0, "--size must be an even number >= 16"),
            (self.fps >= 1, "--fps must be >= 1"),
            (self.clip_length == QVH_CLIP_LENGTH, "--clip-length must be 2.0 with --render"),
            (0 < self.min_duration <= self.max_duration, "need 0 < --min-duration <= --max-duration"),
            (self.min_duration >= 10 * self.clip_length, "--min-duration must be >= 20 s with --render"),
            (0 <= self.val_fraction + self.test_fraction < 1, "val + test fractions must be < 1"),
        ]  # fmt: skip
        for ok, msg in checks:
            if not ok:
                raise RenderError(msg)


Concept = tuple[str, str, str]  # (colour, shape, direction)


@dataclass
class Event:
    concept: Concept
    start: int  # first clip
    end: int  # one past the last clip
    radius: float
    offset: tuple[float, float]  # starting position (row, col) in pixels


@dataclass
class RenderedQuery:
    qid: int
    query: str
    concept: Concept
    windows: list[list[float]]
    relevant_clip_ids: list[int]
    saliency_scores: list[list[int]]


@dataclass
class RenderedVideo:
    vid: str
    duration: float
    background: tuple[int, int, int]
    events: list[Event]
    queries: list[RenderedQuery] = field(default_factory=list)


def all_concepts() -> list[Concept]:
    return [(c, s, d) for c in COLOURS for s in SHAPES for d in DIRECTIONS]


def query_text(concept: Concept, template: int) -> str:
    colour, shape, direction = concept
    return TEMPLATES[template % len(TEMPLATES)].format(
        colour=colour, shape=shape, direction=direction
    )


def _hard_negative(rng: np.random.Generator, c: Concept) -> Concept:
    """The same shape and direction in another colour.

    Colour is what the tiny random-weight backbone's features carry (a linear probe on its
    clip features reads colour well above chance, shape and direction barely: see the README),
    so the hard negatives are ones that the demo's extractor can tell apart.
    """
    which = 0
    pools = (list(COLOURS), list(SHAPES), list(DIRECTIONS))
    choice = [x for x in pools[which] if x != c[which]]
    out = list(c)
    out[which] = choice[int(rng.integers(len(choice)))]
    return (out[0], out[1], out[2])


def _annotate(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 3)`` integer 0..4 annotator scores, higher near the window centre."""
    pos = (np.arange(n) + 0.5) / n
    base = 1.0 + 3.0 * np.sin(np.pi * pos)
    noisy = base[:, None] + rng.uniform(-0.6, 0.6, 3)[None] + rng.normal(0.0, 0.6, (n, 3))
    return np.clip(np.rint(noisy), 0, 4).astype(np.int64)


def layout_video(cfg: RenderConfig, index: int, qid_start: int) -> RenderedVideo:
    """Events, queries and ground truth of video ``index`` (no pixels yet)."""
    rng = np.random.default_rng([cfg.seed, 1, index])
    num_clips = int(rng.integers(int(cfg.min_duration // 2), int(cfg.max_duration // 2) + 1))
    duration = num_clips * cfg.clip_length
    concepts = all_concepts()
    n_targets = 1 + int(rng.random() < 0.5)
    picks = rng.choice(len(concepts), size=n_targets, replace=False)
    targets = [concepts[int(i)] for i in picks]
    distractors: list[Concept] = []
    for _ in range(int(rng.integers(1, 4))):
        for _try in range(20):
            if rng.random() < HARD_NEGATIVE_P:
                d = _hard_negative(rng, targets[int(rng.integers(len(targets)))])
            else:
                d = concepts[int(rng.integers(len(concepts)))]
            if d not in targets:
                distractors.append(d)
                break
    # A target appears in 1 or 2 windows (QVHighlights has several GT windows per query).
    segs: list[Concept] = [t for t in targets for _ in range(1 + int(rng.random() < 0.2))]
    segs += distractors
    order = rng.permutation(len(segs))
    segs = [segs[int(i)] for i in order]
    max_len = max(2, (num_clips - len(segs)) // len(segs))
    lengths = [int(rng.integers(2, min(12, max_len) + 1)) for _ in segs]
    slack = num_clips - sum(lengths) - (len(segs) - 1)
    if slack < 0:  # too many segments for a short video: drop distractors first
        keep = [i for i, s in enumerate(segs) if s in targets]
        segs = [segs[i] for i in keep]
        lengths = [min(lengths[i], max(2, num_clips // (2 * len(keep)))) for i in keep]
        slack = num_clips - sum(lengths) - (len(segs) - 1)
    gaps = rng.multinomial(max(slack, 0), np.full(len(segs) + 1, 1.0 / (len(segs) + 1)))
    events, pos = [], 0
    for i, (c, n) in enumerate(zip(segs, lengths)):
        pos += int(gaps[i]) + (1 if i else 0)
        radius = float(rng.uniform(0.22, 0.32) * cfg.size)
        # Fully inside the frame across the motion (the motion axis wraps around anyway).
        offset = (float(rng.uniform(radius, cfg.size - radius)),
                  float(rng.uniform(radius, cfg.size - radius)))  # fmt: skip
        events.append(Event(c, pos, pos + n, radius, offset))
        pos += n
    video = RenderedVideo(f"r{cfg.seed}_{index:05d}", duration, BACKGROUND, events)
    for j, c in enumerate(targets):
        mine = [e for e in events if e.concept == c]
        ids = [k for e in mine for k in range(e.start, e.end)]
        scores = np.concatenate([_annotate(rng, e.end - e.start) for e in mine])
        video.queries.append(
            RenderedQuery(
                qid=qid_start + j,
                query=query_text(c, int(rng.integers(len(TEMPLATES)))),
                concept=c,
                windows=[[e.start * cfg.clip_length, e.end * cfg.clip_length] for e in mine],
                relevant_clip_ids=ids,
                saliency_scores=scores.tolist(),
            )
        )
    return video


def _shape_mask(shape: str, dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    if shape == "circle":
        return dy * dy + dx * dx <= r * r
    if shape == "square":
        return (np.abs(dy) <= 0.85 * r) & (np.abs(dx) <= 0.85 * r)
    return (dy >= -r) & (dy <= r) & (np.abs(dx) <= 0.5 * (dy + r))  # triangle, apex up


def render_frames(cfg: RenderConfig, video: RenderedVideo) -> np.ndarray:
    """uint8 ``(F, H, W, 3)`` frames of ``video`` at ``cfg.fps``."""
    n = round(video.duration * cfg.fps)
    size = cfg.size
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    frames[:] = np.asarray(video.background, dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    times = (np.arange(n) + 0.5) / cfg.fps
    for ev in video.events:
        t0, t1 = ev.start * cfg.clip_length, ev.end * cfg.clip_length
        idx = np.nonzero((times >= t0) & (times < t1))[0]
        if idx.size == 0:
            continue
        colour, shape, direction = ev.concept
        vy, vx = DIRECTIONS[direction]
        period = size + 2 * ev.radius  # wrap around, fully off-screen between passes
        travelled = (times[idx] - t0) * cfg.speed
        cy = (ev.offset[0] + ev.radius + vy * travelled) % period - ev.radius
        cx = (ev.offset[1] + ev.radius + vx * travelled) % period - ev.radius
        dy = yy[None] - cy[:, None, None]
        dx = xx[None] - cx[:, None, None]
        mask = _shape_mask(shape, dy, dx, ev.radius)
        sub = frames[idx]
        sub[mask] = COLOURS[colour]
        frames[idx] = sub
    return frames


def _splits(cfg: RenderConfig) -> dict[str, list[int]]:
    rng = np.random.default_rng([cfg.seed, 5])
    perm = rng.permutation(cfg.videos).tolist()
    n_val = max(1, round(cfg.val_fraction * cfg.videos))
    n_test = max(1, round(cfg.test_fraction * cfg.videos))
    return {
        "train": sorted(perm[n_val + n_test :]),
        "val": sorted(perm[:n_val]),
        "test": sorted(perm[n_val : n_val + n_test]),
    }


def _row(v: RenderedVideo, q: RenderedQuery) -> dict[str, Any]:
    return {
        "qid": q.qid, "query": q.query, "duration": v.duration, "vid": v.vid,
        "relevant_windows": q.windows, "relevant_clip_ids": q.relevant_clip_ids,
        "saliency_scores": q.saliency_scores,
    }  # fmt: skip


def render_benchmark(cfg: RenderConfig, out: str | Path, log: Any = None) -> dict[str, Any]:
    """Render every video to ``out/videos`` and write the split jsonl files; returns a summary.

    Videos already on disk (same name) are kept, so an interrupted render resumes.
    """
    cfg.validate()
    out = Path(out)
    video_dir = out / "videos"
    video_dir.mkdir(parents=True, exist_ok=True)
    videos, qid = [], 0
    for i in range(cfg.videos):
        videos.append(layout_video(cfg, i, qid))
        qid += len(videos[-1].queries)
    t0 = time.perf_counter()
    for i, v in enumerate(videos):
        path = video_dir / f"{v.vid}.mp4"
        if not path.is_file():
            write_mp4(path, render_frames(cfg, v), cfg.fps)
        if log is not None and (i + 1) % 50 == 0:
            log(f"      rendered {i + 1}/{len(videos)} videos ({time.perf_counter() - t0:.0f}s)")
    splits = _splits(cfg)
    counts = {}
    for split, idx in splits.items():
        rows = [_row(videos[i], q) for i in idx for q in videos[i].queries]
        write_jsonl(out / f"{split}.jsonl", rows)
        counts[split] = len(rows)
    summary = {
        "generator": "sidetune synth grounding --render",
        "config": asdict(cfg),
        "queries": counts,
        "videos": {s: len(ix) for s, ix in splits.items()},
        "grammar": {
            "templates": list(TEMPLATES),
            "colours": list(COLOURS),
            "shapes": list(SHAPES),
            "directions": list(DIRECTIONS),
        },
        "query_concepts": {str(q.qid): list(q.concept) for v in videos for q in v.queries},
    }
    write_json(out / "rendered.json", summary, indent=None)
    return summary


__all__ = [
    "COLOURS",
    "DIRECTIONS",
    "SHAPES",
    "TEMPLATES",
    "RenderConfig",
    "RenderError",
    "layout_video",
    "query_text",
    "render_benchmark",
    "render_frames",
]
