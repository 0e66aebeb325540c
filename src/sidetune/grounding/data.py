"""Grounding data: annotation rows + cached K-layer features -> model-ready samples and batches.

One sample is one query (a row of a QVHighlights-style jsonl) paired with its video's features
``[K, T, F_v]`` and its own text features ``[K, L, F_t]`` from the feature store
(:mod:`sidetune.features.store`). Targets follow the model's conventions:

- ``spans``: ``(N, 2)`` normalized ``(center, width)`` relative to the *feature timeline*
  ``num_clips * clip_length`` seconds. Windows are sorted (start <= end), clamped to the
  timeline, and dropped when nothing of them is left (only possible after truncation).
- ``saliency``: ``(T,)`` per clip. QVHighlights rows with ``saliency_scores``: the sum of the
  three annotators' scores on the relevant clips (0..12), 0 elsewhere. Rows without them
  (Charades-STA, TACoS; SDST supp. B): 1.0 for clips inside any GT window, 0 elsewhere, where
  clip ``i`` (covering ``[i*c, (i+1)*c)``) is inside when at least half of it overlaps the
  window or it holds the window's midpoint (so every window has at least one positive clip).

Decisions where the paper is silent:

- The number of clips ``T`` comes from the video features, not from ``duration``: public QVH
  features have 75 clips for 150 s, and some files are one clip short or long. ``duration``
  is kept in the metas for clamping predictions.
- Videos longer than ``max_clips`` are by default *pooled*: the T clips are split into
  ``max_clips`` contiguous, near-equal bins and averaged (features and saliency), so no GT window
  is lost; the sample's ``clip_length`` becomes ``T * clip_length / max_clips`` so that
  ``num_clips * clip_length`` (the timeline) is unchanged. ``long_video: truncate`` keeps the
  first ``max_clips`` clips instead (windows beyond the cut are clamped or dropped).
- "Minimum video length 5" (SDST Tab. A, the value R^2-Tuning's configs use) is read as: training
  rows whose ``duration`` is below ``min_video_len`` seconds are skipped. Val/test rows are
  never skipped, so metrics always cover the whole split.
- ``layers`` picks K of the stored layers (negative indices count from the deepest); a ``[T, F]``
  file is one layer. A one-layer text file (e.g. public CLIP ``last_hidden_state``) is repeated
  to the video's K when ``text_layers`` is null. ``last_layer_only`` repeats the last chosen
  layer K times (the "last layer only" ablation: same model, no intermediate information).
- Queries longer than ``max_query_len`` tokens keep their first tokens (a CLS token stays first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from sidetune.config import ConfigError
from sidetune.errors import SidetuneError
from sidetune.features.store import SUFFIXES, FeatureStore
from sidetune.grounding.annotations import CLIP_LENGTH, GroundingRecord, load_annotations
from sidetune.grounding.span_utils import pad_spans

Split = Literal["train", "val", "test"]


class DataError(SidetuneError, ValueError):
    """Annotations and features that do not fit together; names the file, qid or vid."""


@dataclass
class DataConfig:
    """``data.*`` keys of a grounding config.

    dataset: which annotation dialect and defaults (clip length) apply.
    train / val / test: jsonl annotation files (QVHighlights layout); val/test may be null.
    video_features / text_features: directories of ``{vid}.npz`` / ``qid{qid}.npz`` files.
    clip_length: seconds per feature clip; null -> ``CLIP_LENGTH[dataset]`` (2.0 / 1.0 / 2.0).
    layers: stored layers to use as the K levels (e.g. ``[-4, -3, -2, -1]``); null = all.
    text_layers: the same for text features; null = ``layers`` (one-layer text is repeated).
    last_layer_only: repeat the last chosen layer K times (ablation without intermediate layers).
    max_clips: at most this many clips per video (null = no limit); see ``long_video``.
    long_video: ``pool`` (average contiguous bins, keeps every window), ``truncate``, or
        ``window``: prediction / evaluation slide overlapping windows of ``max_clips`` clips over
        a longer video (:mod:`sidetune.grounding.windows`); training rows are pooled as with ``pool``.
    window_stride: clips between window starts for ``window`` (null = half of ``max_clips``).
    max_query_len: at most this many text tokens (the first ones are kept).
    min_video_len: training rows with ``duration`` below this many seconds are skipped.
    text_cls: legacy key, ignored (it was never read; run configs saved before it was dropped
        still carry it). Whether text token 0 is a CLS is ``model.text_cls`` alone.
    feature_layout: ``auto`` (``[T, F]`` / ``[K, T, F]`` files) or ``r2tuning`` (R2-Tuning's
        ``[T, K, P, C]`` video / ``[L, K, C]`` text cache; see :mod:`sidetune.features.store`).
    token_pool: ``cls`` | ``mean``: how ``r2tuning`` video tokens become one vector per clip.
    cache_features: keep loaded feature arrays in memory (LRU of ``cache_max_items``; 0 = all).
    strict: annotation rows with errors stop loading (false: skip them and report them).
    """

    dataset: Literal["qvhighlights", "charades", "tacos"] = "qvhighlights"
    train: str | None = None
    val: str | None = None
    test: str | None = None
    video_features: str = ""
    text_features: str = ""
    clip_length: float | None = None
    layers: list[int] | None = None
    text_layers: list[int] | None = None
    last_layer_only: bool = False
    max_clips: int | None = 75
    long_video: Literal["pool", "truncate", "window"] = "pool"
    window_stride: int | None = None
    max_query_len: int = 32
    min_video_len: float = 5.0
    text_cls: bool | None = None
    feature_layout: Literal["auto", "r2tuning"] = "auto"
    token_pool: Literal["cls", "mean"] = "cls"
    cache_features: bool = False
    cache_max_items: int = 0
    strict: bool = True

    def __post_init__(self) -> None:
        if self.clip_length is not None and self.clip_length <= 0:
            raise ConfigError(f"data.clip_length must be > 0, got {self.clip_length}")
        if self.max_clips is not None and self.max_clips < 1:
            raise ConfigError(f"data.max_clips must be >= 1 or null, got {self.max_clips}")
        if self.window_stride is not None and self.window_stride < 1:
            raise ConfigError(f"data.window_stride must be >= 1 or null, got {self.window_stride}")
        if self.max_query_len < 1:
            raise ConfigError(f"data.max_query_len must be >= 1, got {self.max_query_len}")
        if self.cache_max_items < 0:
            raise ConfigError(f"data.cache_max_items must be >= 0, got {self.cache_max_items}")
        for name in ("layers", "text_layers"):
            value = getattr(self, name)
            if value is not None and len(value) == 0:
                raise ConfigError(f"data.{name} must be a non-empty list of layer indices or null")

    @property
    def resolved_clip_length(self) -> float:
        return float(
            self.clip_length if self.clip_length is not None else CLIP_LENGTH[self.dataset]
        )


# --------------------------------------------------------------------------------------------
# Pure per-sample transforms (NumPy, vectorized over windows and clips)
# --------------------------------------------------------------------------------------------


def select_layers(
    feats: np.ndarray, layers: Sequence[int] | None, last_layer_only: bool, where: str
) -> np.ndarray:
    """``[T, F]`` or ``[K_file, T, F]`` -> ``[K, T, F]`` with the chosen layers.

    Returns a view when all layers are taken in order, else a copy.
    """
    arr = feats[None] if feats.ndim == 2 else feats
    k_file = arr.shape[0]
    if layers is None:
        idx = np.arange(k_file)
    else:
        idx = np.asarray(layers, dtype=np.int64)
        bad = (idx < -k_file) | (idx >= k_file)
        if bad.any():
            raise DataError(
                f"{where}: layer index {int(idx[bad][0])} out of range for a file with "
                f"{k_file} layer(s) (shape {tuple(feats.shape)}); check data.layers"
            )
        idx = idx % k_file
    if last_layer_only:
        idx = np.full_like(idx, idx[-1])
    if np.array_equal(idx, np.arange(k_file)):
        return arr
    return arr[idx]


def windows_array(windows: Sequence[Sequence[float]]) -> np.ndarray:
    """Windows in seconds -> ``(N, 2)`` float64 ``[start, end]`` with start <= end."""
    arr = np.asarray(windows, dtype=np.float64).reshape(-1, 2)
    return np.sort(arr, axis=1)


def normalize_windows(windows: np.ndarray, timeline: float) -> np.ndarray:
    """``(N, 2)`` seconds -> ``(N', 2)`` float32 normalized ``(center, width)``.

    Windows are clamped to ``[0, timeline]``; those with nothing left are dropped.
    """
    clamped = np.clip(windows, 0.0, timeline) / timeline
    clamped = clamped[clamped[:, 1] > clamped[:, 0]]
    center = clamped.mean(axis=1)
    width = clamped[:, 1] - clamped[:, 0]
    return np.stack([center, width], axis=1).astype(np.float32)


def window_saliency(windows: np.ndarray, num_clips: int, clip_length: float) -> np.ndarray:
    """Binary ``(T,)`` saliency: 1.0 for clips inside any window (see the module docstring)."""
    sal = np.zeros(num_clips, dtype=np.float32)
    if windows.size == 0:
        return sal
    starts = np.arange(num_clips, dtype=np.float64)[None, :] * clip_length
    ends = starts + clip_length
    overlap = np.minimum(windows[:, 1:2], ends) - np.maximum(windows[:, 0:1], starts)
    mid = windows.mean(axis=1, keepdims=True)
    holds_mid = (starts <= mid) & (mid < ends)
    inside = (overlap >= 0.5 * clip_length) | holds_mid
    sal[inside.any(axis=0)] = 1.0
    return sal


def annotator_saliency(
    clip_ids: Sequence[int], scores: Sequence[Sequence[int]], num_clips: int
) -> np.ndarray:
    """QVHighlights ``(T,)`` saliency: per relevant clip, the sum of the annotators' scores."""
    sal = np.zeros(num_clips, dtype=np.float32)
    if len(clip_ids) == 0:
        return sal
    ids = np.asarray(clip_ids, dtype=np.int64)
    total = np.asarray(scores, dtype=np.float32).reshape(len(ids), -1).sum(axis=1)
    keep = (ids >= 0) & (ids < num_clips)  # features one clip shorter than the annotation
    sal[ids[keep]] = total[keep]
    return sal


def pool_bins(num_clips: int, max_clips: int) -> tuple[np.ndarray, np.ndarray]:
    """Start index and size of ``max_clips`` contiguous near-equal bins over ``num_clips`` clips."""
    edges = np.round(np.linspace(0, num_clips, max_clips + 1)).astype(np.int64)
    return edges[:-1], np.diff(edges)


def pool_clips(values: np.ndarray, starts: np.ndarray, sizes: np.ndarray, axis: int) -> np.ndarray:
    """Average contiguous bins of clips along ``axis`` (float32)."""
    summed = np.add.reduceat(values.astype(np.float32, copy=False), starts, axis=axis)
    shape = [1] * summed.ndim
    shape[axis] = len(sizes)
    return summed / sizes.reshape(shape).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


def _missing_features(
    records: Sequence[GroundingRecord], videos: FeatureStore, texts: FeatureStore
) -> list[str]:
    problems = []
    seen_vids: dict[str, bool] = {}
    for rec in records:
        if rec.vid not in seen_vids:
            seen_vids[rec.vid] = videos.exists(rec.vid)
        if not seen_vids[rec.vid]:
            problems.append(
                f"video features for vid {rec.vid!r} (qid {rec.qid}) not found in {videos.root} "
                f"(looked for {', '.join(rec.vid + s for s in SUFFIXES)})"
            )
        if not texts.exists(rec.qid):
            problems.append(
                f"text features for qid {rec.qid} not found in {texts.root} "
                f"(looked for {', '.join(f'qid{rec.qid}{s}' for s in SUFFIXES)})"
            )
    return problems


class GroundingDataset(Dataset[dict[str, Any]]):
    """One item per query: features, targets and metas (see :func:`collate_grounding`).

    Args:
        cfg: the data config (paths, layers, clip limits, caching).
        split: which annotation file of ``cfg`` to read; ``train`` also skips rows shorter than
            ``cfg.min_video_len`` seconds and requires ground truth on every row.
        records: use these rows instead of reading ``cfg.<split>`` (tests, custom pipelines).
        check_files: verify at construction that every row's feature files exist.

    ``__getitem__`` returns ``{"video_feats": [K, T, F_v], "text_feats": [K, L, F_t],
    "spans": (N, 2) float32 | None, "saliency": (T,) float32 | None, "meta": dict}``; the
    feature arrays keep their stored dtype (float16) until collation.
    """

    def __init__(
        self,
        cfg: DataConfig,
        split: Split = "train",
        *,
        records: Sequence[GroundingRecord] | None = None,
        check_files: bool = True,
    ) -> None:
        self.cfg = cfg
        self.split = split
        self.clip_length = cfg.resolved_clip_length
        if records is None:
            path = getattr(cfg, split, None)
            if path is None:
                raise ConfigError(f"data.{split} is null: no annotation file for split {split!r}")
            ann = load_annotations(path, dataset=cfg.dataset, strict=cfg.strict)
            self.source = str(ann.path)
            self.skipped: list[str] = list(ann.skipped)  # bad rows dropped when not strict
            records = list(ann.records)
        else:
            self.source = f"<{len(records)} {split} records>"
            self.skipped = []
            records = list(records)
        if split == "train":
            records = [r for r in records if r.duration >= cfg.min_video_len]
        if not records:
            raise DataError(f"{self.source}: no usable rows for split {split!r}")
        self.records: list[GroundingRecord] = records

        with_gt = [len(r.windows) > 0 for r in records]
        self.has_targets = all(with_gt)
        if not self.has_targets and (split == "train" or any(with_gt)):
            first = records[with_gt.index(False)]
            raise DataError(
                f"{self.source}: qid {first.qid} has no relevant_windows; "
                f"{'training rows need ground truth' if split == 'train' else 'a split must have ground truth on all rows or none'}"
            )

        if not cfg.video_features or not cfg.text_features:
            raise ConfigError("data.video_features and data.text_features must name directories")
        for key in ("video_features", "text_features"):
            if not Path(getattr(cfg, key)).is_dir():
                raise ConfigError(f"data.{key}: directory {getattr(cfg, key)} does not exist")
        self.videos = FeatureStore(
            cfg.video_features, "video", cache=cfg.cache_features, max_items=cfg.cache_max_items,
            layout=cfg.feature_layout, token_pool=cfg.token_pool,
        )  # fmt: skip
        self.texts = FeatureStore(
            cfg.text_features, "text", cache=cfg.cache_features, max_items=cfg.cache_max_items,
            layout=cfg.feature_layout, token_pool=cfg.token_pool,
        )  # fmt: skip
        if check_files:
            problems = _missing_features(records, self.videos, self.texts)
            if problems:
                more = f" ({len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
                raise DataError(f"{self.source}: {problems[0]}{more}")

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"GroundingDataset({self.source!r}, split={self.split!r}, n={len(self)})"

    def _text(self, rec: GroundingRecord, num_levels: int) -> np.ndarray:
        cfg = self.cfg
        raw = self.texts.get(rec.qid)
        where = f"text features of qid {rec.qid} ({self.texts.root})"
        if raw.ndim == 2 and cfg.text_layers is None:
            text = raw[None]
        else:
            layers = cfg.text_layers if cfg.text_layers is not None else cfg.layers
            text = select_layers(raw, layers, cfg.last_layer_only, where)
        if text.shape[0] == 1 and num_levels > 1:
            # A view: the collate sees that the levels share one array and sends it once.
            text = np.broadcast_to(text, (num_levels, *text.shape[1:]))
        elif text.shape[0] != num_levels:
            raise DataError(self._layer_mismatch(rec, raw, text.shape[0], num_levels))
        return text[:, : cfg.max_query_len]

    def _layer_mismatch(
        self, rec: GroundingRecord, text: np.ndarray, k_text: int, k_video: int
    ) -> str:
        """Name both files and both fixes: one odd file, or a text/video layer setting."""
        video_file = self.videos.path(rec.vid)
        video_shape = tuple(self.videos.get(rec.vid).shape)
        text_file = self.texts.path(rec.qid)
        return (
            f"qid {rec.qid}: {k_text} text layer(s) from {text_file} (shape {tuple(text.shape)}) "
            f"but {k_video} video layer(s) from {video_file} (shape {video_shape}); if only "
            "one of these files differs from the others, re-extract it (`sidetune check` lists "
            "every odd file); if all text files have a different layer count, set "
            "data.text_layers"
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        cfg = self.cfg
        rec = self.records[index]
        video = select_layers(
            self.videos.get(rec.vid),
            cfg.layers,
            cfg.last_layer_only,
            f"video features of vid {rec.vid!r} ({self.videos.root})",
        )
        text = self._text(rec, video.shape[0])
        num_clips = int(video.shape[1])
        clip_length = self.clip_length
        timeline = num_clips * clip_length

        spans = saliency = None
        windows = windows_array(rec.windows)
        if self.has_targets:
            if rec.saliency_scores is not None and rec.relevant_clip_ids is not None:
                saliency = annotator_saliency(rec.relevant_clip_ids, rec.saliency_scores, num_clips)
            else:
                saliency = window_saliency(windows, num_clips, clip_length)

        max_clips = cfg.max_clips
        if cfg.long_video == "window" and self.split != "train":
            max_clips = None  # the predictor slides windows over the whole video
        if max_clips is not None and num_clips > max_clips:
            if cfg.long_video in ("pool", "window"):
                starts, sizes = pool_bins(num_clips, max_clips)
                video = pool_clips(video, starts, sizes, axis=1)
                if saliency is not None:
                    saliency = pool_clips(saliency, starts, sizes, axis=0)
                clip_length = timeline / max_clips
            else:
                video = video[:, :max_clips]
                if saliency is not None:
                    saliency = saliency[:max_clips]
                timeline = max_clips * clip_length
            num_clips = max_clips
        if self.has_targets:
            spans = normalize_windows(windows, timeline)

        meta = {
            "qid": rec.qid,
            "vid": rec.vid,
            "query": rec.query,
            "duration": float(rec.duration),
            "num_clips": num_clips,
            "clip_length": float(clip_length),
        }
        return {
            "video_feats": video,
            "text_feats": text,
            "spans": spans,
            "saliency": saliency,
            "meta": meta,
        }

    def feature_shapes(self) -> dict[str, int]:
        """``num_levels`` (K), ``video_dim`` and ``text_dim`` of the first sample, to check a model."""
        sample = self[0]
        return {
            "num_levels": int(sample["video_feats"].shape[0]),
            "video_dim": int(sample["video_feats"].shape[-1]),
            "text_dim": int(sample["text_feats"].shape[-1]),
        }


# --------------------------------------------------------------------------------------------
# Collate
# --------------------------------------------------------------------------------------------


def _check_same(samples: Sequence[dict[str, Any]], key: str, dims: tuple[int, ...]) -> None:
    ref = samples[0][key]
    for s in samples[1:]:
        arr = s[key]
        if arr.ndim != ref.ndim or any(arr.shape[d] != ref.shape[d] for d in dims):
            raise DataError(
                f"{key} of qid {s['meta']['qid']} has shape {tuple(arr.shape)}, but qid "
                f"{samples[0]['meta']['qid']} has {tuple(ref.shape)} (layers and feature dim "
                "must agree across the dataset)"
            )


def _levels_shared(feats: np.ndarray) -> bool:
    """Whether all levels of ``[K, ...]`` are one array (one layer, or a broadcast view)."""
    return feats.shape[0] == 1 or feats.strides[0] == 0


def collate_grounding(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch samples of :class:`GroundingDataset` (zero-padded, float32).

    Returns:
        video_feats: ``(B, K, T, F_v)`` float32, zero beyond each video's clips.
        video_mask: ``(B, T)`` bool, True = valid clip.
        text_feats: ``(B, K, L, F_t)`` float32, zero beyond each query's tokens; ``(B, 1, L,
            F_t)`` when every sample's text is one layer shared by all levels.
        text_mask: ``(B, L)`` bool, True = valid token.
        targets: ``{"spans": list of B (N_i, 2) float32 normalized (center, width),
            "spans_padded": (B, N_max, 2) the same spans zero-padded (padding rows (0.5, 0)),
            "spans_mask": (B, N_max) bool (True = real span),
            "saliency": (B, T) float32, "video_ids": (B,) int64 (equal = same video)}``;
            absent when the samples have no ground truth.
        metas: list of B dicts (qid, vid, query, duration, num_clips, clip_length).
    """
    if not samples:
        raise ValueError("collate_grounding needs at least one sample")
    _check_same(samples, "video_feats", (0, 2))
    _check_same(samples, "text_feats", (0, 2))
    bsz = len(samples)
    num_levels, _, video_dim = samples[0]["video_feats"].shape
    text_dim = samples[0]["text_feats"].shape[-1]
    t_max = max(s["video_feats"].shape[1] for s in samples)
    l_max = max(s["text_feats"].shape[1] for s in samples)

    # One text layer broadcast to every level (see GroundingDataset._text) travels once: the
    # model projects it once instead of K times.
    shared = all(_levels_shared(s["text_feats"]) for s in samples)
    video = torch.zeros(bsz, num_levels, t_max, video_dim)
    text = torch.zeros(bsz, 1 if shared else num_levels, l_max, text_dim)
    text_np = text.numpy()
    video_lens = torch.tensor([s["video_feats"].shape[1] for s in samples])
    text_lens = torch.tensor([s["text_feats"].shape[1] for s in samples])
    for i, s in enumerate(samples):  # one copy per sample (and the float16 -> float32 cast)
        video[i, :, : s["video_feats"].shape[1]] = torch.from_numpy(s["video_feats"])
        tokens = s["text_feats"][:1] if shared else s["text_feats"]
        text_np[i, :, : tokens.shape[1]] = tokens  # numpy casts; reads broadcast views too
    batch: dict[str, Any] = {
        "video_feats": video,
        "video_mask": torch.arange(t_max)[None, :] < video_lens[:, None],
        "text_feats": text,
        "text_mask": torch.arange(l_max)[None, :] < text_lens[:, None],
        "metas": [s["meta"] for s in samples],
    }

    has_gt = [s["spans"] is not None for s in samples]
    if all(has_gt):
        saliency = torch.zeros(bsz, t_max)
        for i, s in enumerate(samples):
            saliency[i, : len(s["saliency"])] = torch.from_numpy(s["saliency"])
        vids: dict[str, int] = {}
        spans = [torch.from_numpy(s["spans"]) for s in samples]
        # Padded once here (in a loader worker), so the loss never pads on the training device.
        spans_padded, spans_mask = pad_spans(spans)
        batch["targets"] = {
            "spans": spans,
            "spans_padded": spans_padded,
            "spans_mask": spans_mask,
            "saliency": saliency,
            # Same id = same video: the alignment loss must not use one as the other's negative.
            "video_ids": torch.tensor(
                [vids.setdefault(s["meta"]["vid"], len(vids)) for s in samples]
            ),
        }
    elif any(has_gt):
        qid = samples[has_gt.index(False)]["meta"]["qid"]
        raise DataError(f"batch mixes queries with and without ground truth (qid {qid} has none)")
    return batch


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def build_dataset(cfg: DataConfig, split: Split, check_files: bool = True) -> GroundingDataset:
    """The dataset of one split (``cfg.<split>`` must be set)."""
    return GroundingDataset(cfg, split, check_files=check_files)


def build_datasets(cfg: DataConfig, check_files: bool = True) -> dict[str, GroundingDataset]:
    """Datasets of every split whose annotation file is set, keyed ``train`` / ``val`` / ``test``."""
    splits: tuple[Split, ...] = ("train", "val", "test")
    return {
        split: GroundingDataset(cfg, split, check_files=check_files)
        for split in splits
        if getattr(cfg, split) is not None
    }
