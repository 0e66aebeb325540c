"""Embedded synthetic grounding benchmark: ``sidetune synth grounding --out DIR``.

Writes exactly the public layouts, so the whole pipeline (dataset, model, metrics, predictions)
runs on it unchanged:

- ``DIR/video_features/{vid}.npz``: key ``features``, ``[K, T, F_v]`` float16;
- ``DIR/text_features/qid{qid}.npz``: key ``last_hidden_state``, ``[K, L, F_t]`` float16;
- ``DIR/{train,val,test}.jsonl``: QVHighlights rows (qid, query, vid, duration,
  relevant_windows, relevant_clip_ids, saliency_scores with 3 annotators);
- ``DIR/synthetic.json``: the generator settings, the concept names and each query's concept.

Generative model
----------------
A *concept* is an (adjective, noun) pair, e.g. "red kite": ``A`` adjectives x ``G`` nouns
(default 2 x 8 = 16). Each has latent codes in ``R^d``: an adjective code ``z_a`` (fine
identity) and a noun code ``z_g`` (coarse identity). Concepts sharing a noun ("red kite" /
"green kite") or an adjective ("red kite" / "red dog") are *hard negatives* of each other.

Video ``v`` has ``T`` clips of ``clip_length`` s (default 10..75 clips = 20..150 s). It contains
*events*: the target events of its 1-2 queries (1-3 windows each, window lengths drawn
QVHighlights-like: 37 % short <= 10 s, 39 % middle, 24 % long > 30 s) and 1-3 *distractor*
events of other concepts (70 % hard negatives), placed without overlap. Every event has an
intensity profile ``s(t)`` over its clips (higher at the centre; for target windows it is the
annotators' mean saliency), a random per-instance appearance ``e``, and onset / offset clips.

Layer ``k`` of K sits at depth ``p = k / (K - 1)`` and sees, in latent space,
``h_k(t) = bg(t) + (1.2 - p) sum_j s_j(t) e_j + (1 - p) (on(t) u_on + off(t) u_off)
+ f(p) sum_j s_j(t) z_{a_j} + (0.3 + 0.7 p) blur_{2p}(sum_j s_j z_{g_j})(t) + nuisance``,
with ``f(p) = sin(pi p)^2``. So shallow layers localize events and their boundaries but do
not say which concept; middle layers carry the fine identity (the adjective) sharply in time; the last layer carries the coarse identity (the noun), temporally
blurred (Gaussian, sigma = 2p clips). Telling "red kite" from a "green kite" distractor and
finding its exact boundaries needs the intermediate layers; the last layer alone cannot.
``bg`` is a per-video vector plus a slow random walk. Features are ``x_k = W_k h_k + noise e``
with a random map ``W_k`` per layer (``F_v x d``, entries N(0, 1): a unit latent component has
per-dimension std 1, the scale ``--noise`` is measured in) and standard Gaussian ``e``; the latent
nuisance (norm ``noise / 2``) cannot be averaged away over feature dimensions.

The query ``"a red kite flying"`` (one of a few templates) has tokens ``[CLS] + words``.
Function words have their own fixed vectors (no concept information), the adjective token
carries ``z_a``, the noun token ``z_g``, the verb a noisy copy of ``z_g``. Text layer ``k``
contextualizes: each token mixes in ``0.15 + 0.6 p`` of the mean content token, and the CLS
token becomes a summary (``0.2 + 0.8 p`` of it), plus a small positional code; then
``y_k = U_k t_k + noise / 2 e`` with a random ``U_k`` (``F_t x d``). The text names the
concept at every layer, so only the query disambiguates which event is the answer.

Saliency: 3 annotators score each clip of a target window with integers 0..4, around
``1 + 3 sin(pi * position)`` plus a per-annotator bias and per-clip noise; the event's intensity
in the video follows their mean, so the HD target is visible in the features.

``--annotations real.jsonl`` copies videos (first ``--videos`` distinct ones; 0 = all),
durations, windows, queries and saliency (QVHighlights) from real rows, assigns each query a
concept, adds distractor events in the free time, and synthesises features consistent with
them. Rows without saliency (Charades-STA, TACoS) get synthetic annotator scores. A video with
more queries than concepts (TACoS) repeats concepts, which makes those queries ambiguous. With
``--clip-length`` other than QVHighlights' 2 s the rows leave out ``relevant_clip_ids`` /
``saliency_scores`` (Charades-STA style; ``synthetic.json`` names the dataset to read them as).

Defaults (``make demo``): 600 videos -> 621 train / 156 val / 87 test queries (432 / 108 / 60
videos), K = 4, F_v = 64, F_t = 48, latent d = 32, noise 0.5, 2-s clips; about 20 MB on disk and
5-8 s to generate on a contended 2-core CPU. Everything is deterministic given ``--seed`` (the
world and each video draw from their own seeded streams, so a video does not change with
``--videos``). All files are written atomically; files of earlier runs with other names are
left alone (the jsonl files list what belongs to the benchmark).
"""

from __future__ import annotations

import argparse
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sidetune.errors import SidetuneError
from sidetune.features.store import save_text_features, save_video_features
from sidetune.utils.io import write_json, write_jsonl

NOUNS = (
    ("kite", "flying"), ("dog", "running"), ("guitar", "playing"), ("cake", "baking"),
    ("car", "driving"), ("horse", "galloping"), ("boat", "sailing"), ("bike", "riding"),
    ("drone", "hovering"), ("train", "passing"), ("crowd", "cheering"), ("fire", "burning"),
)  # fmt: skip
ADJECTIVES = ("red", "green", "blue", "small", "old", "striped")
FUNCTION_WORDS = ("a", "the", "is", "in", "video", "shows", "with", "someone", "on", "screen", "then")  # fmt: skip
TEMPLATES = (
    ("a", "ADJ", "NOUN", "VERB"),
    ("the", "NOUN", "is", "ADJ", "then", "VERB"),
    ("someone", "with", "a", "ADJ", "NOUN"),
    ("video", "shows", "the", "ADJ", "NOUN", "VERB", "on", "screen"),
    ("a", "ADJ", "NOUN", "is", "VERB", "in", "the", "video"),
)
NUM_ANNOTATORS = 3
QVH_CLIP_LENGTH = 2.0  # relevant_clip_ids in QVHighlights rows count 2-s clips
HARD_NEGATIVE_P = 0.7


class SynthError(SidetuneError, ValueError):
    """Bad generator settings; names the option."""


@dataclass
class SynthConfig:
    """Settings of :func:`generate` (the CLI options, same names)."""

    seed: int = 0
    videos: int = 600
    noise: float = 0.5
    layers: int = 4
    video_dim: int = 64
    text_dim: int = 48
    latent_dim: int = 32
    nouns: int = 8
    adjectives: int = 2
    clip_length: float = 2.0
    min_duration: float = 20.0
    max_duration: float = 150.0
    val_fraction: float = 0.18
    test_fraction: float = 0.10
    annotations: str | None = None
    annotations_dataset: str = "qvhighlights"

    def validate(self) -> None:
        checks = [
            (self.videos >= 0, "--videos must be >= 0"),
            (self.noise >= 0, "--noise must be >= 0"),
            (self.layers >= 1, "--layers must be >= 1"),
            (min(self.video_dim, self.text_dim, self.latent_dim) >= 1, "dims must be >= 1"),
            (2 <= self.nouns <= len(NOUNS), f"--nouns must be in 2..{len(NOUNS)}"),
            (
                2 <= self.adjectives <= len(ADJECTIVES),
                f"--adjectives must be in 2..{len(ADJECTIVES)}",
            ),
            (self.clip_length > 0, "--clip-length must be > 0"),
            (
                0 < self.min_duration <= self.max_duration,
                "need 0 < --min-duration <= --max-duration",
            ),
            (self.min_duration >= 4 * self.clip_length, "--min-duration must cover >= 4 clips"),
            (self.val_fraction >= 0 and self.test_fraction >= 0, "split fractions must be >= 0"),
            (
                self.val_fraction + self.test_fraction < 1,
                "--val-fraction + --test-fraction must be < 1",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise SynthError(msg)
        if self.annotations is None and self.videos < 1:
            raise SynthError("--videos must be >= 1 without --annotations")

    @property
    def num_concepts(self) -> int:
        return self.nouns * self.adjectives


# --------------------------------------------------------------------------------------------
# The world: concept codes, function words, per-layer maps (shared by every split)
# --------------------------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def layer_depths(num_layers: int) -> np.ndarray:
    """Depth ``p`` in [0, 1] of each of the K layers (a single layer counts as the last)."""
    return np.linspace(0.0, 1.0, num_layers) if num_layers > 1 else np.ones(1)


def layer_weights(num_layers: int) -> dict[str, np.ndarray]:
    """Per-layer strength of each video component (see the module docstring)."""
    p = layer_depths(num_layers)
    return {
        "instance": 1.2 - p,
        "boundary": 1.0 - p,
        "fine": np.sin(np.pi * p) ** 2,
        "coarse": 0.3 + 0.7 * p,
        "blur": 2.0 * p,
    }


@dataclass
class World:
    adj_codes: np.ndarray  # (A, d) fine identity
    noun_codes: np.ndarray  # (G, d) coarse identity
    verb_codes: np.ndarray  # (G, d)
    word_codes: dict[str, np.ndarray]  # function words -> (d,)
    cls_code: np.ndarray  # (d,)
    onset: np.ndarray  # (d,)
    offset: np.ndarray  # (d,)
    positions: np.ndarray  # (L_max, d) positional codes of text tokens
    video_maps: np.ndarray  # (K, F_v, d)
    text_maps: np.ndarray  # (K, F_t, d)

    def concept(self, c: int) -> tuple[int, int]:
        """Concept id -> (noun index, adjective index)."""
        return c // len(self.adj_codes), c % len(self.adj_codes)

    def concept_code(self, c: int) -> np.ndarray:
        g, a = self.concept(c)
        return self.adj_codes[a] + self.noun_codes[g]


def make_world(cfg: SynthConfig) -> World:
    rng = np.random.default_rng([cfg.seed, 0])
    d = cfg.latent_dim
    noun_codes = _unit(rng.standard_normal((cfg.nouns, d)))
    max_tokens = 1 + max(len(t) for t in TEMPLATES)
    return World(
        adj_codes=_unit(rng.standard_normal((cfg.adjectives, d))),
        noun_codes=noun_codes,
        verb_codes=_unit(noun_codes + 0.6 * _unit(rng.standard_normal((cfg.nouns, d)))),
        word_codes={w: 0.8 * _unit(rng.standard_normal(d)) for w in FUNCTION_WORDS},
        cls_code=_unit(rng.standard_normal(d)),
        onset=_unit(rng.standard_normal(d)),
        offset=_unit(rng.standard_normal(d)),
        positions=0.3 * _unit(rng.standard_normal((max_tokens, d))),
        video_maps=rng.standard_normal((cfg.layers, cfg.video_dim, d)),
        text_maps=rng.standard_normal((cfg.layers, cfg.text_dim, d)),
    )


def concept_name(world: World, c: int) -> str:
    g, a = world.concept(c)
    return f"{ADJECTIVES[a]} {NOUNS[g][0]}"


# --------------------------------------------------------------------------------------------
# Per-video layout: events, windows, saliency
# --------------------------------------------------------------------------------------------


@dataclass
class Event:
    concept: int
    start: int  # first clip
    end: int  # one past the last clip
    intensity: np.ndarray  # (end - start,) in (0, 1]
    query: int | None = None  # index into the video's queries; None for a distractor


@dataclass
class SynthQuery:
    qid: int | str
    query: str
    concept: int
    tokens: list[str]
    windows: list[list[float]]
    relevant_clip_ids: list[int]
    saliency_scores: list[list[int]]


@dataclass
class SynthVideo:
    vid: str
    duration: float
    num_clips: int
    events: list[Event] = field(default_factory=list)
    queries: list[SynthQuery] = field(default_factory=list)

    def clip_concepts(self) -> np.ndarray:
        """``(T,)`` concept id of the event at each clip, -1 for background."""
        out = np.full(self.num_clips, -1, dtype=np.int64)
        for ev in self.events:
            out[ev.start : ev.end] = ev.concept
        return out


def _window_length(rng: np.random.Generator, num_clips: int, clip_length: float) -> int:
    """Clips in one window: QVHighlights-like short (<= 10 s) / middle / long (> 30 s)."""
    kind = rng.choice(3, p=[0.37, 0.39, 0.24])
    seconds = [rng.uniform(2, 10), rng.uniform(10, 30), rng.uniform(30, 90)][kind]
    clips = max(1, round(seconds / clip_length))
    return min(clips, max(1, num_clips // 3))


def _profile(n: int) -> np.ndarray:
    """Bump over ``n`` clips: sin(pi * position), 1 at the centre, > 0 at the edges."""
    pos = (np.arange(n) + 0.5) / n
    return np.sin(np.pi * pos)


def _annotate(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 3)`` integer 0..4 annotator scores, higher near the window centre."""
    base = 1.0 + 3.0 * _profile(n)
    bias = rng.uniform(-0.6, 0.6, size=NUM_ANNOTATORS)
    noisy = base[:, None] + bias[None, :] + rng.normal(0.0, 0.6, size=(n, NUM_ANNOTATORS))
    return np.clip(np.rint(noisy), 0, 4).astype(np.int64)


def _intensity_from_scores(scores: np.ndarray) -> np.ndarray:
    return 0.35 + 0.65 * scores.mean(axis=1) / 4.0


def _pick_concepts(
    rng: np.random.Generator, world: World, num_queries: int, num_distractors: int
) -> tuple[list[int], list[int]]:
    """Distinct target concepts, then distractors: mostly hard negatives of a target."""
    num_adj = len(world.adj_codes)
    total = len(world.noun_codes) * num_adj
    targets = [int(c) for c in rng.choice(total, size=num_queries, replace=False)]
    used = set(targets)
    distractors: list[int] = []
    for _ in range(num_distractors):
        if rng.random() < HARD_NEGATIVE_P:
            g, a = world.concept(targets[int(rng.integers(len(targets)))])
            options = [g * num_adj + b for b in range(num_adj) if b != a]  # same noun
            options += [h * num_adj + a for h in range(len(world.noun_codes)) if h != g]
            options = [c for c in options if c not in used]
        else:
            options = [c for c in range(total) if c not in used]
        if not options:
            break
        c = int(options[int(rng.integers(len(options)))])
        used.add(c)
        distractors.append(c)
    return targets, distractors


def _place(rng: np.random.Generator, lengths: Sequence[int], num_clips: int) -> list[int]:
    """Start clips for segments (in the given order) without overlap, >= 1 clip apart.

    ``lengths`` must fit: sum(lengths) + len(lengths) - 1 <= num_clips.
    """
    slack = num_clips - (sum(lengths) + len(lengths) - 1)
    gaps = rng.multinomial(slack, np.full(len(lengths) + 1, 1.0 / (len(lengths) + 1)))
    starts, pos = [], 0
    for i, n in enumerate(lengths):
        pos += int(gaps[i]) + (1 if i else 0)
        starts.append(pos)
        pos += n
    return starts


def _fit_lengths(lengths: list[int], num_clips: int) -> list[int]:
    """Shrink the longest segments until all fit with 1-clip gaps."""
    lengths = list(lengths)
    while sum(lengths) + len(lengths) - 1 > num_clips and max(lengths) > 1:
        i = int(np.argmax(lengths))
        lengths[i] = max(1, lengths[i] * 3 // 4)
    return lengths


def _drop_segments(
    segments: list[tuple[int, int | None]], num_clips: int
) -> list[tuple[int, int | None]]:
    """Drop distractors, then extra windows, until one clip each (+ gaps) fits in the video."""
    segments = list(segments)
    while 2 * len(segments) - 1 > num_clips:
        counts: dict[int | None, int] = {}
        for _, qi in segments:
            counts[qi] = counts.get(qi, 0) + 1
        victims = [i for i, (_, qi) in enumerate(segments) if qi is None]
        victims = victims or [i for i, (_, qi) in enumerate(segments) if counts[qi] > 1]
        if not victims:
            break
        segments.pop(victims[-1])
    return segments


def _query_text(rng: np.random.Generator, c: int, world: World) -> list[str]:
    g, a = world.concept(c)
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    fill = {"ADJ": ADJECTIVES[a], "NOUN": NOUNS[g][0], "VERB": NOUNS[g][1]}
    return [fill.get(w, w) for w in template]


def synth_video(cfg: SynthConfig, world: World, index: int, qid_start: int) -> SynthVideo:
    """A fully synthetic video with 1-2 queries (qids from ``qid_start``) and distractors."""
    rng = np.random.default_rng([cfg.seed, 1, index])
    lo = max(4, round(cfg.min_duration / cfg.clip_length))
    hi = max(lo, round(cfg.max_duration / cfg.clip_length))
    num_clips = hi if rng.random() < 0.3 else int(rng.integers(lo, hi + 1))
    num_queries = 1 + int(num_clips >= 20 and rng.random() < 0.5)
    num_distractors = int(rng.integers(1, 4))
    targets, distractors = _pick_concepts(rng, world, num_queries, num_distractors)

    segments: list[tuple[int, int | None]] = []  # (concept, query index)
    for qi, c in enumerate(targets):
        num_windows = int(rng.choice(3, p=[0.65, 0.25, 0.10])) + 1
        segments += [(c, qi)] * num_windows
    segments += [(c, None) for c in distractors]
    segments = _drop_segments(segments, num_clips)
    lengths = [_window_length(rng, num_clips, cfg.clip_length) for _ in segments]
    lengths = _fit_lengths(lengths, num_clips)
    order = rng.permutation(len(segments))
    starts = _place(rng, [lengths[i] for i in order], num_clips)

    video = SynthVideo(
        vid=f"synth_{index:05d}", duration=num_clips * cfg.clip_length, num_clips=num_clips
    )
    scores_per_query: dict[int, list[tuple[int, np.ndarray]]] = {
        qi: [] for qi in range(len(targets))
    }
    for start, i in zip(starts, order):
        c, qi = segments[i]
        n = lengths[i]
        if qi is None:
            intensity = 0.35 + 0.65 * _profile(n) * rng.uniform(0.7, 1.0)
        else:
            scores = _annotate(rng, n)
            scores_per_query[qi].append((start, scores))
            intensity = _intensity_from_scores(scores)
        video.events.append(Event(c, start, start + n, intensity, qi))

    for qi, c in enumerate(targets):
        parts = sorted(scores_per_query[qi], key=lambda x: x[0])
        tokens = _query_text(rng, c, world)
        video.queries.append(
            SynthQuery(
                qid=qid_start + qi,
                query=" ".join(tokens),
                concept=c,
                tokens=tokens,
                windows=[[s * cfg.clip_length, (s + len(sc)) * cfg.clip_length] for s, sc in parts],
                relevant_clip_ids=[s + j for s, sc in parts for j in range(len(sc))],
                saliency_scores=[row.tolist() for _, sc in parts for row in sc],
            )
        )
    return video


def _id_runs(ids: np.ndarray) -> list[np.ndarray]:
    """Positions in sorted ``ids`` grouped into runs of consecutive clip ids."""
    if len(ids) == 0:
        return []
    return np.split(np.arange(len(ids)), np.flatnonzero(np.diff(ids) > 1) + 1)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of every run of True in a 1-D bool mask."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def video_from_rows(
    cfg: SynthConfig, world: World, index: int, vid: str, rows: Sequence[Any]
) -> SynthVideo:
    """A video laid out by real annotation rows (same vid): their windows, saliency, queries."""
    rng = np.random.default_rng([cfg.seed, 2, index])
    duration = float(rows[0].duration)
    num_clips = max(1, math.ceil(duration / cfg.clip_length - 1e-6))
    distinct = min(len(rows), cfg.num_concepts)
    picked, distractors = _pick_concepts(rng, world, distinct, int(rng.integers(1, 3)))
    # More queries than concepts (TACoS has dozens per video): concepts repeat, and those
    # queries are ambiguous by construction; raise --nouns / --adjectives to avoid it.
    targets = [picked[i % distinct] for i in range(len(rows))]
    video = SynthVideo(vid=vid, duration=duration, num_clips=num_clips)
    covered = np.zeros(num_clips, dtype=bool)
    clip_starts = np.arange(num_clips) * cfg.clip_length
    for qi, rec in enumerate(rows):
        c = targets[qi]
        windows = [sorted((float(s), float(e))) for s, e in rec.windows]
        if rec.relevant_clip_ids is not None and rec.saliency_scores is not None:
            ids = np.asarray(rec.relevant_clip_ids, dtype=np.int64)
            scores = np.asarray(rec.saliency_scores, dtype=np.int64).reshape(len(ids), -1)
        else:
            inside = np.zeros(num_clips, dtype=bool)
            for s, e in windows:
                inside |= (clip_starts + 0.5 * cfg.clip_length >= s) & (
                    clip_starts + 0.5 * cfg.clip_length < e
                )
                inside[min(num_clips - 1, int((s + e) / 2 // cfg.clip_length))] = True
            ids = np.flatnonzero(inside)
            scores = np.zeros((len(ids), NUM_ANNOTATORS), dtype=np.int64)
            for run in _id_runs(ids):
                scores[run] = _annotate(rng, len(run))
        keep = (ids >= 0) & (ids < num_clips)
        ids, scores = ids[keep], scores[keep]
        covered[ids] = True
        for run in _id_runs(ids):  # one event per contiguous run of relevant clips
            start, stop = int(ids[run[0]]), int(ids[run[-1]]) + 1
            video.events.append(Event(c, start, stop, _intensity_from_scores(scores[run]), qi))
        tokens = _query_text(rng, c, world)
        video.queries.append(
            SynthQuery(
                qid=rec.qid,
                query=rec.query,
                concept=c,
                tokens=tokens,
                windows=[list(w) for w in windows],
                relevant_clip_ids=ids.tolist(),
                saliency_scores=scores.tolist(),
            )
        )
    # Distractors go into free runs of clips, at least one clip away from any other event.
    for c in distractors:
        near = covered.copy()
        near[1:] |= covered[:-1]
        near[:-1] |= covered[1:]
        runs = [(lo, hi) for lo, hi in _runs(~near) if hi - lo >= 2]
        if not runs:
            break
        lo, hi = runs[int(rng.integers(len(runs)))]
        n = max(1, min(_window_length(rng, num_clips, cfg.clip_length), hi - lo - 1))
        start = lo + int(rng.integers(0, hi - lo - n + 1))
        intensity = 0.35 + 0.65 * _profile(n) * rng.uniform(0.7, 1.0)
        video.events.append(Event(c, start, start + n, intensity, None))
        covered[start : start + n] = True
    return video


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


def _blur_matrices(num_clips: int, sigmas: np.ndarray) -> np.ndarray:
    """``(K, T, T)`` row-normalized Gaussian smoothing along time (identity for sigma 0)."""
    t = np.arange(num_clips, dtype=np.float64)
    dist2 = (t[:, None] - t[None, :]) ** 2
    mats = np.empty((len(sigmas), num_clips, num_clips))
    for k, sigma in enumerate(sigmas):
        if sigma < 1e-6:
            mats[k] = np.eye(num_clips)
        else:
            w = np.exp(-dist2 / (2 * sigma**2))
            mats[k] = w / w.sum(axis=1, keepdims=True)
    return mats


def video_features(cfg: SynthConfig, world: World, video: SynthVideo, index: int) -> np.ndarray:
    """``[K, T, F_v]`` float32 features of ``video`` (the generative model of the docstring)."""
    rng = np.random.default_rng([cfg.seed, 3, index])
    num_clips, d = video.num_clips, cfg.latent_dim
    weights = layer_weights(cfg.layers)

    instance = np.zeros((num_clips, d))
    fine = np.zeros((num_clips, d))
    coarse = np.zeros((num_clips, d))
    bound = np.zeros((num_clips, d))
    for ev in video.events:
        g, a = world.concept(ev.concept)
        sl = slice(ev.start, ev.end)
        prof = ev.intensity[:, None]
        instance[sl] += prof * _unit(rng.standard_normal(d))
        fine[sl] += prof * world.adj_codes[a]
        coarse[sl] += prof * world.noun_codes[g]
        for clip, code in ((ev.start, world.onset), (ev.end - 1, world.offset)):
            for off, w in ((-1, 0.4), (0, 1.0), (1, 0.4)):
                if 0 <= clip + off < num_clips:
                    bound[clip + off] += w * code

    walk = np.cumsum(rng.standard_normal((num_clips, d)), axis=0) / math.sqrt(num_clips)
    background = _unit(rng.standard_normal(d))[None, :] + 0.5 * walk / math.sqrt(d)
    blurred = _blur_matrices(num_clips, weights["blur"]) @ coarse  # (K, T, d)
    latent = (
        background[None]
        + weights["instance"][:, None, None] * instance[None]
        + weights["boundary"][:, None, None] * bound[None]
        + weights["fine"][:, None, None] * fine[None]
        + weights["coarse"][:, None, None] * blurred
        + cfg.noise * 0.5 * rng.standard_normal((cfg.layers, num_clips, d)) / math.sqrt(d)
    )
    feats = np.einsum("ktd,kfd->ktf", latent, world.video_maps)
    feats += cfg.noise * rng.standard_normal(feats.shape)
    return feats.astype(np.float32)


def text_features(cfg: SynthConfig, world: World, query: SynthQuery, key: int | str) -> np.ndarray:
    """``[K, L, F_t]`` float32 features of a query: CLS + word tokens, contextualized per layer."""
    rng = np.random.default_rng([cfg.seed, 4, zlib.crc32(str(key).encode())])
    g, a = world.concept(query.concept)
    d = cfg.latent_dim
    base, content = [world.cls_code], []
    for w in query.tokens:
        if w == ADJECTIVES[a]:
            vec = world.adj_codes[a]
        elif w == NOUNS[g][0]:
            vec = world.noun_codes[g]
        elif w == NOUNS[g][1]:
            vec = world.verb_codes[g]
        else:
            base.append(world.word_codes[w])
            continue
        base.append(vec)
        content.append(vec)
    tokens = np.stack(base)  # (L, d)
    mean_content = np.mean(content, axis=0)
    p = layer_depths(cfg.layers)[:, None, None]
    mix = 0.15 + 0.6 * p
    layered = (1 - mix) * tokens[None] + mix * mean_content[None, None]
    layered[:, 0] = world.cls_code + (0.2 + 0.8 * p[:, 0]) * mean_content
    layered = layered + world.positions[None, : len(tokens)]
    layered += cfg.noise * 0.3 * rng.standard_normal(layered.shape) / math.sqrt(d)
    feats = np.einsum("kld,kfd->klf", layered, world.text_maps)
    feats += cfg.noise * 0.5 * rng.standard_normal(feats.shape)
    return feats.astype(np.float32)


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


@dataclass
class SyntheticBenchmark:
    """Everything :func:`generate` made; :func:`write` puts it on disk in the public layouts."""

    cfg: SynthConfig
    world: World
    videos: list[SynthVideo]
    splits: dict[str, list[int]]  # split -> indices into videos

    def rows(self, split: str) -> list[dict[str, Any]]:
        """QVHighlights jsonl rows of a split, in video then query order."""
        out = []
        for i in self.splits[split]:
            v = self.videos[i]
            for q in v.queries:
                row: dict[str, Any] = {
                    "qid": q.qid,
                    "query": q.query,
                    "duration": v.duration,
                    "vid": v.vid,
                    "relevant_windows": q.windows,
                }
                if self.qvhighlights_rows:
                    row["relevant_clip_ids"] = q.relevant_clip_ids
                    row["saliency_scores"] = q.saliency_scores
                out.append(row)
        return out

    @property
    def qvhighlights_rows(self) -> bool:
        """Rows carry QVHighlights clip ids + saliency only when clips are its 2 s clips."""
        return self.cfg.clip_length == QVH_CLIP_LENGTH

    @property
    def dataset(self) -> str:
        """The ``data.dataset`` to read the jsonl files with."""
        return "qvhighlights" if self.qvhighlights_rows else "charades"

    def video_features(self, i: int) -> np.ndarray:
        return video_features(self.cfg, self.world, self.videos[i], i)

    def text_features(self, query: SynthQuery) -> np.ndarray:
        return text_features(self.cfg, self.world, query, query.qid)


def _split_indices(cfg: SynthConfig, num_videos: int) -> dict[str, list[int]]:
    rng = np.random.default_rng([cfg.seed, 5])
    perm = rng.permutation(num_videos)

    def count(frac: float) -> int:
        n = round(frac * num_videos)
        return max(1, n) if frac > 0 and num_videos >= 3 else n

    n_val, n_test = count(cfg.val_fraction), count(cfg.test_fraction)
    return {
        "val": sorted(perm[:n_val].tolist()),
        "test": sorted(perm[n_val : n_val + n_test].tolist()),
        "train": sorted(perm[n_val + n_test :].tolist()),
    }


def _load_rows(cfg: SynthConfig) -> list[tuple[str, list[Any]]]:
    from sidetune.grounding.annotations import load_annotations

    assert cfg.annotations is not None
    ann = load_annotations(cfg.annotations, dataset=cfg.annotations_dataset, strict=True)
    by_vid: dict[str, list[Any]] = {}
    for rec in ann.records:
        if not rec.windows:
            raise SynthError(f"{cfg.annotations}: qid {rec.qid} has no relevant_windows to copy")
        by_vid.setdefault(rec.vid, []).append(rec)
    groups = list(by_vid.items())
    return groups[: cfg.videos] if cfg.videos > 0 else groups


def generate(cfg: SynthConfig) -> SyntheticBenchmark:
    """Lay out every video and query (features are computed on demand / by :func:`write`)."""
    cfg.validate()
    world = make_world(cfg)
    videos: list[SynthVideo] = []
    if cfg.annotations is None:
        qid = 0
        for i in range(cfg.videos):
            videos.append(synth_video(cfg, world, i, qid))
            qid += len(videos[-1].queries)
    else:
        for i, (vid, rows) in enumerate(_load_rows(cfg)):
            videos.append(video_from_rows(cfg, world, i, vid, rows))
    return SyntheticBenchmark(cfg, world, videos, _split_indices(cfg, len(videos)))


def data_overrides(root: str | Path) -> list[str]:
    """``data.*`` overrides that point a grounding config at a set written by :func:`write`."""
    root = Path(root)
    return [
        f"data.train={root / 'train.jsonl'}",
        f"data.val={root / 'val.jsonl'}",
        f"data.test={root / 'test.jsonl'}",
        f"data.video_features={root / 'video_features'}",
        f"data.text_features={root / 'text_features'}",
    ]


def write(bench: SyntheticBenchmark, out: str | Path) -> dict[str, Any]:
    """Write features, jsonl files and ``synthetic.json`` under ``out``; returns the summary."""
    out = Path(out)
    video_dir, text_dir = out / "video_features", out / "text_features"
    for i, video in enumerate(bench.videos):
        save_video_features(video_dir, video.vid, bench.video_features(i))
        for q in video.queries:
            save_text_features(text_dir, q.qid, bench.text_features(q))
    counts = {}
    for split in ("train", "val", "test"):
        rows = bench.rows(split)
        counts[split] = len(rows)
        if rows:
            write_jsonl(out / f"{split}.jsonl", rows)
    summary = {
        "generator": "sidetune synth grounding",
        "config": asdict(bench.cfg),
        "queries": counts,
        "videos": {s: len(ix) for s, ix in bench.splits.items()},
        "num_layers": bench.cfg.layers,
        "video_dim": bench.cfg.video_dim,
        "text_dim": bench.cfg.text_dim,
        "clip_length": bench.cfg.clip_length,
        "dataset": bench.dataset,
        "text_cls": True,
        "concepts": [concept_name(bench.world, c) for c in range(bench.cfg.num_concepts)],
        "query_concepts": {str(q.qid): q.concept for v in bench.videos for q in v.queries},
    }
    write_json(out / "synthetic.json", summary, indent=None)
    return summary


# --------------------------------------------------------------------------------------------
# CLI: sidetune synth grounding
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SynthConfig()
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--seed", type=int, default=d.seed, help="random seed (default %(default)s)"
    )
    parser.add_argument("--videos", type=int, default=None,
                        help=f"number of videos; with --annotations the first N distinct videos, 0 = all (default {d.videos}; with --render 400)")  # fmt: skip
    parser.add_argument("--render", action="store_true",
                        help="render real mp4 videos with scripted events and grammar queries "
                        "(sidetune.grounding.render) instead of writing features")  # fmt: skip
    parser.add_argument("--size", type=int, default=64, help="--render: frame side in pixels")
    parser.add_argument("--fps", type=int, default=4, help="--render: frames per second")
    parser.add_argument(
        "--noise", type=float, default=d.noise, help="noise scale (default %(default)s)"
    )
    parser.add_argument(
        "--layers", type=int, default=d.layers, help="K layers per file (default %(default)s)"
    )
    parser.add_argument(
        "--video-dim", type=int, default=d.video_dim, help="F_v (default %(default)s)"
    )
    parser.add_argument(
        "--text-dim", type=int, default=d.text_dim, help="F_t (default %(default)s)"
    )
    parser.add_argument(
        "--latent-dim", type=int, default=d.latent_dim, help="latent d (default %(default)s)"
    )
    parser.add_argument(
        "--nouns", type=int, default=d.nouns, help="coarse concepts (default %(default)s)"
    )
    parser.add_argument("--adjectives", type=int, default=d.adjectives,
                        help="fine variants per noun (default %(default)s)")  # fmt: skip
    parser.add_argument("--clip-length", type=float, default=d.clip_length,
                        help="seconds per clip; rows carry QVHighlights saliency only at 2.0 (default %(default)s)")  # fmt: skip
    parser.add_argument("--min-duration", type=float, default=None,
                        help=f"shortest video, s (default {d.min_duration}; with --render 30)")  # fmt: skip
    parser.add_argument("--max-duration", type=float, default=None,
                        help=f"longest video, s (default {d.max_duration}; with --render 90)")  # fmt: skip
    parser.add_argument("--val-fraction", type=float, default=None,
                        help=f"videos in val (default {d.val_fraction}; with --render 0.15)")  # fmt: skip
    parser.add_argument("--test-fraction", type=float, default=None,
                        help=f"videos in test (default {d.test_fraction}; with --render 0.15)")  # fmt: skip
    parser.add_argument("--annotations", default=None,
                        help="real jsonl to copy durations, windows and saliency from")  # fmt: skip
    parser.add_argument("--annotations-dataset", default=d.annotations_dataset,
                        choices=("qvhighlights", "charades", "tacos"),
                        help="dialect of --annotations (default %(default)s)")  # fmt: skip


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    names = {f for f in SynthConfig.__dataclass_fields__}
    return SynthConfig(**{k: v for k, v in vars(args).items() if k in names and v is not None})


def _run_render(args: argparse.Namespace) -> int:
    from sidetune.grounding.render import RenderConfig, render_benchmark

    names = {"seed", "videos", "size", "fps", "min_duration", "max_duration", "val_fraction",
             "test_fraction", "clip_length"}  # fmt: skip
    cfg = RenderConfig(**{k: v for k, v in vars(args).items() if k in names and v is not None})
    t0 = time.perf_counter()
    summary = render_benchmark(cfg, args.out, log=print)
    q, v = summary["queries"], summary["videos"]
    print(
        f"rendered {args.out}/videos: {v['train']}/{v['val']}/{v['test']} videos, "
        f"{q['train']}/{q['val']}/{q['test']} queries (train/val/test) in "
        f"{time.perf_counter() - t0:.1f}s; extract them with `sidetune extract --backbone "
        f"internvideo2-tiny --videos {args.out}/videos --annotations {args.out}/*.jsonl --out "
        f"{args.out}/features`"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "render", False):
        return _run_render(args)
    cfg = config_from_args(args)
    t0 = time.perf_counter()
    summary = write(generate(cfg), args.out)
    q, v = summary["queries"], summary["videos"]
    print(
        f"wrote {args.out}: {v['train']}/{v['val']}/{v['test']} videos, "
        f"{q['train']}/{q['val']}/{q['test']} queries (train/val/test), "
        f"K={cfg.layers} F_v={cfg.video_dim} F_t={cfg.text_dim} in {time.perf_counter() - t0:.1f}s"
    )
    return 0
