"""Predictions of a trained SDST: batches, one (video, query) pair, or a whole split.

- :func:`predict_rows`: official prediction rows for every batch of a loader; with
  ``data.long_video: window`` a video longer than the trained length is slid over in windows
  (:mod:`sidetune.grounding.windows`) instead of being pooled.
- :class:`GroundingPredictor` / :func:`load_grounding_model`: one pair from Python, features in.
- :func:`predict` (``sidetune predict``): a split of a run's config -> predictions jsonl
  (+ the official metrics when the split has ground truth).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from sidetune.config import ConfigError
from sidetune.engine import DeviceLoader, autocast_context, resolve_device
from sidetune.errors import SidetuneError
from sidetune.features.store import check_finite
from sidetune.grounding.annotations import GroundingRecord
from sidetune.grounding.check import check_feature_shapes
from sidetune.grounding.config import GroundingConfig
from sidetune.grounding.data import (
    DataConfig,
    GroundingDataset,
    collate_grounding,
    pool_bins,
    pool_clips,
    select_layers,
)
from sidetune.grounding.postprocess import PostprocessConfig, confidence, postprocess, soft_nms
from sidetune.grounding.runs import load_grounding_config, load_run, run_config_path
from sidetune.grounding.span_utils import span_cxw_to_xx
from sidetune.grounding.windows import average_saliency, resolve_stride, to_absolute, window_starts
from sidetune.utils.io import write_json, write_jsonl

MODEL_INPUTS = ("video_feats", "video_mask", "text_feats", "text_mask")


def forward(model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
    return model(*(batch[k] for k in MODEL_INPUTS))


def window_settings(data: DataConfig) -> tuple[int, int] | None:
    """``(window, stride)`` in clips when ``data.long_video`` is ``window``, else None."""
    if data.long_video != "window" or data.max_clips is None:
        return None
    return data.max_clips, resolve_stride(data.max_clips, data.window_stride)


@torch.no_grad()
def predict_long(
    model: nn.Module,
    video: torch.Tensor,
    text: torch.Tensor,
    meta: Mapping[str, Any],
    post: PostprocessConfig,
    window: int,
    stride: int,
    batch_size: int = 16,
) -> dict[str, Any]:
    """One official row for a video of any length, by sliding windows of ``window`` clips.

    Args:
        video: ``(K, T, F_v)`` on the model's device (T may be any length).
        text: ``(K, L, F_t)``: the query's real tokens only.
        meta: ``qid, vid, query, duration, clip_length`` (``num_clips`` is T).
    """
    num_clips = int(video.shape[1])
    clip_length = float(meta["clip_length"])
    duration = float(meta["duration"])
    width = min(window, num_clips)
    starts = window_starts(num_clips, width, stride)
    text_b = text[None]
    text_mask = torch.ones(1, text.shape[1], dtype=torch.bool, device=text.device)
    video_mask = torch.ones(1, width, dtype=torch.bool, device=video.device)
    cands, scores, saliency = [], [], []
    for i in range(0, len(starts), batch_size):
        chunk = starts[i : i + batch_size]
        clips = torch.stack([video[:, s : s + width] for s in chunk])  # (B, K, W, F)
        b = len(chunk)
        out = forward(model, {
            "video_feats": clips, "video_mask": video_mask.expand(b, -1),
            "text_feats": text_b.expand(b, -1, -1, -1), "text_mask": text_mask.expand(b, -1),
        })  # fmt: skip
        actionness = out.get("pred_actionness") if post.use_actionness else None
        if post.use_actionness and actionness is None:
            raise SidetuneError(
                "the model gives no 'pred_actionness'; set postprocess.use_actionness=false"
            )
        scores.append(confidence(out["pred_logits"], actionness))  # Eq. 23
        xx = span_cxw_to_xx(out["pred_spans"].float())
        cands.append(to_absolute(xx, chunk, clip_length, width, duration))
        saliency.append(out["saliency"].float()[:, :width])
    windows = torch.cat(cands).reshape(1, -1, 2)
    score = torch.cat(scores).reshape(1, -1)
    score = score.masked_fill(windows[..., 1] <= windows[..., 0], -math.inf)
    order, kept = soft_nms(windows, score, post.top_k, post.nms, post.sigma, post.iou_threshold)
    picked = windows[0, order[0]].cpu().tolist()
    kept_l = kept[0].cpu().tolist()
    sal = average_saliency(torch.cat(saliency), starts, num_clips).cpu().tolist()
    d = post.decimals
    return {
        "qid": meta["qid"],
        "query": meta["query"],
        "vid": meta["vid"],
        "pred_relevant_windows": [
            [round(s, d), round(e, d), round(c, d)]
            for (s, e), c in zip(picked, kept_l)
            if math.isfinite(c) and c >= post.score_threshold
        ],
        "pred_saliency_scores": [round(v, d) for v in sal],
    }


def _rows_windowed(
    model: nn.Module, batch: Mapping[str, Any], post: PostprocessConfig, window: int, stride: int
) -> list[dict[str, Any]]:
    """Rows of one collated batch: short videos in one forward pass, long ones by windows."""
    metas = batch["metas"]
    long_ = [i for i, m in enumerate(metas) if int(m["num_clips"]) > window]
    if not long_:
        return postprocess(forward(model, batch), metas, post)
    rows: dict[int, dict[str, Any]] = {}
    short = [i for i in range(len(metas)) if i not in long_]
    if short:
        t = max(int(metas[i]["num_clips"]) for i in short)
        sub = {
            "video_feats": batch["video_feats"][short][:, :, :t],
            "video_mask": batch["video_mask"][short][:, :t],
            "text_feats": batch["text_feats"][short],
            "text_mask": batch["text_mask"][short],
        }
        for i, row in zip(short, postprocess(forward(model, sub), [metas[i] for i in short], post)):
            rows[i] = row
    for i in long_:
        n = int(metas[i]["num_clips"])
        length = int(batch["text_mask"][i].sum())
        rows[i] = predict_long(
            model, batch["video_feats"][i, :, :n], batch["text_feats"][i, :, :length], metas[i],
            post, window, stride,
        )  # fmt: skip
    return [rows[i] for i in range(len(metas))]


def predict_rows(
    model: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    post: PostprocessConfig,
    windows: tuple[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Official prediction rows for every batch of ``loader`` (already on the model's device).

    ``windows``: ``(window, stride)`` in clips to slide over videos longer than ``window``
    (see :func:`window_settings`); None runs every batch as it is.
    """
    rows: list[dict[str, Any]] = []
    for batch in loader:
        if windows is None:
            rows.extend(postprocess(forward(model, batch), batch["metas"], post))
        else:
            rows.extend(_rows_windowed(model, batch, post, *windows))
    return rows


def evaluate_rows(
    rows: Sequence[Mapping[str, Any]], ground_truth: Sequence[GroundingRecord], dataset: str
) -> dict[str, Any]:
    """The official evaluator's output for prediction rows."""
    from sidetune.grounding.metrics import evaluate_predictions

    return evaluate_predictions(list(rows), ground_truth, dataset)


@dataclass
class SplitRun:
    """A trained run loaded for one split: its config, model, checkpoint, data and loader."""

    cfg: GroundingConfig
    model: nn.Module
    checkpoint: Path
    dataset: GroundingDataset
    loader: DeviceLoader
    device: torch.device


def load_split(
    run_dir: str | Path,
    split: str,
    overrides: Sequence[str] = (),
    checkpoint: str = "best",
    batch_size: int | None = None,
    device: str | None = None,
) -> SplitRun:
    """The run's model (``checkpoint``) and a loader over ``split`` of its data, checked."""
    if split not in ("train", "val", "test"):
        raise ConfigError(f"split must be train, val or test, got {split!r}")
    cfg_path = run_config_path(run_dir)
    dev = resolve_device(device or load_grounding_config(cfg_path, overrides).train.device)
    cfg, model, ckpt = load_run(run_dir, overrides, checkpoint, device=str(dev))
    if getattr(cfg.data, split) is None:
        raise ConfigError(f"data.{split} is null in {cfg_path}; pass data.{split}=PATH")
    dataset = GroundingDataset(cfg.data, split)  # type: ignore[arg-type]
    check_feature_shapes(dataset, cfg)
    loader = DataLoader(
        dataset,
        batch_size=batch_size or cfg.train.eval_batch_size or cfg.train.batch_size,
        shuffle=False,
        collate_fn=collate_grounding,
        num_workers=cfg.train.num_workers,
    )
    return SplitRun(cfg, model, Path(ckpt), dataset, DeviceLoader(loader, dev), dev)


def predict(
    run_dir: str | Path,
    split: str = "val",
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    checkpoint: str = "best",
    batch_size: int | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Write ``split``'s predictions of a trained run; score them when the split has GT.

    Returns ``{"predictions": path, "checkpoint": path, "num_rows": n, "metrics": dict | None,
    "metrics_path": path | None}``. ``out`` defaults to ``run_dir/preds_<split>.jsonl``; the
    metrics (full evaluator output) go beside it as ``<out stem>_metrics.json``.
    """
    run = load_split(run_dir, split, overrides, checkpoint, batch_size, device)
    cfg, dataset, ckpt = run.cfg, run.dataset, run.checkpoint
    with torch.no_grad(), autocast_context(cfg.train.amp, run.device):
        rows = predict_rows(run.model, run.loader, cfg.post, window_settings(cfg.data))
    out_path = Path(out) if out is not None else Path(run_dir) / f"preds_{split}.jsonl"
    write_jsonl(out_path, rows)
    result: dict[str, Any] = {
        "predictions": out_path,
        "checkpoint": ckpt,
        "num_rows": len(rows),
        "metrics": None,
        "metrics_path": None,
    }
    if dataset.has_targets:
        metrics = evaluate_rows(rows, dataset.records, cfg.data.dataset)
        metrics_path = out_path.with_name(out_path.stem + "_metrics.json")
        write_json(metrics_path, metrics)
        result.update(metrics=metrics, metrics_path=metrics_path)
    return result


def prepare_sample(
    data: DataConfig,
    num_levels: int,
    video_feats: np.ndarray,
    query_feats: np.ndarray,
    clip_length: float,
    duration: float | None,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """One (video, query) pair shaped exactly as :class:`GroundingDataset` would shape it.

    A one-layer input (``[T, F]`` / ``[L, F]``) is repeated to the model's ``num_levels``.
    With ``data.long_video: window`` a long video keeps all its clips (the caller slides).
    """
    if video_feats.ndim not in (2, 3) or query_feats.ndim not in (2, 3):
        raise SidetuneError(
            f"video_feats must be [T, F_v] or [K, T, F_v] and query_feats [L, F_t] or [K, L, F_t]; "
            f"got {tuple(video_feats.shape)} and {tuple(query_feats.shape)}"
        )
    check_finite(video_feats, "video_feats")
    check_finite(query_feats, "query_feats")
    video = select_layers(video_feats, data.layers, data.last_layer_only, "video_feats")
    if video.shape[0] == 1 and num_levels > 1:
        video = np.repeat(video, num_levels, axis=0)  # one layer given: the last-layer-only input
    elif video.shape[0] != num_levels:
        raise SidetuneError(
            f"video_feats: {video.shape[0]} layer(s) selected (shape {tuple(video_feats.shape)}, "
            f"data.layers={data.layers}) but the model has num_levels={num_levels}"
        )
    if query_feats.ndim == 2 and data.text_layers is None:
        text = query_feats[None]
    else:
        layers = data.text_layers if data.text_layers is not None else data.layers
        text = select_layers(query_feats, layers, data.last_layer_only, "query_feats")
    if text.shape[0] == 1 and num_levels > 1:
        text = np.repeat(text, num_levels, axis=0)
    elif text.shape[0] != num_levels:
        raise SidetuneError(f"query_feats: {text.shape[0]} layer(s) but the video has {num_levels}")
    text = text[:, : data.max_query_len]
    num_clips = int(video.shape[1])
    timeline = num_clips * clip_length
    if data.max_clips is not None and num_clips > data.max_clips and data.long_video != "window":
        if data.long_video == "pool":
            starts, sizes = pool_bins(num_clips, data.max_clips)
            video = pool_clips(video, starts, sizes, axis=1)
            clip_length = timeline / data.max_clips
        else:
            video = video[:, : data.max_clips]
        num_clips = data.max_clips
    full_meta = {
        **meta,
        "duration": float(duration if duration is not None else timeline),
        "num_clips": num_clips,
        "clip_length": float(clip_length),
    }
    return {
        "video_feats": np.ascontiguousarray(video, dtype=np.float32),
        "text_feats": np.ascontiguousarray(text, dtype=np.float32),
        "spans": None,
        "saliency": None,
        "meta": full_meta,
    }


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


class GroundingPredictor:
    """A trained SDST with its run's data settings; see :func:`load_grounding_model`."""

    def __init__(
        self, model: nn.Module, cfg: GroundingConfig, checkpoint: Path | None = None
    ) -> None:
        self.model = model.eval()
        self.cfg = cfg
        self.checkpoint = checkpoint

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def predict(
        self,
        video_feats: np.ndarray | torch.Tensor,
        query_feats: np.ndarray | torch.Tensor,
        duration: float | None = None,
        clip_length: float | None = None,
        query: str = "",
        qid: int | str = 0,
        vid: str = "video",
        long_video: str | None = None,
        stride: int | None = None,
    ) -> dict[str, Any]:
        """Moments and per-clip saliency for one (video, query) pair.

        Args:
            video_feats: ``[T, F_v]`` or ``[K, T, F_v]`` (numpy or torch).
            query_feats: ``[L, F_t]`` or ``[K, L, F_t]``.
            duration: video length in seconds (windows are clamped to it);
                default ``T * clip_length``.
            clip_length: seconds per feature clip; default the run's ``data.clip_length``
                (2 s QVHighlights / TACoS, 1 s Charades-STA).
            long_video: ``pool`` | ``truncate`` | ``window`` for videos longer than the
                run's ``data.max_clips``; default the run's ``data.long_video``.
            stride: window stride in clips (``window`` only); default the run's
                ``data.window_stride``, else half a window.

        Returns:
            The official prediction row: ``{qid, query, vid, pred_relevant_windows:
            [[start_s, end_s, score], ...] best first, pred_saliency_scores: [float] * T}``.
        """
        cl = float(clip_length if clip_length is not None else self.cfg.data.resolved_clip_length)
        if cl <= 0:
            raise SidetuneError(f"clip_length must be > 0, got {cl}")
        data = self.cfg.data
        if long_video is not None or stride is not None:
            from dataclasses import replace

            data = replace(
                data,
                long_video=long_video or data.long_video,  # type: ignore[arg-type]
                window_stride=stride if stride is not None else data.window_stride,
            )
        sample = prepare_sample(
            data,
            self.cfg.model.num_levels,
            _as_numpy(video_feats),
            _as_numpy(query_feats),
            cl,
            duration,
            {"qid": qid, "vid": vid, "query": query},
        )
        dev = self.device
        windows = window_settings(data)
        if windows is not None and sample["meta"]["num_clips"] > windows[0]:
            return predict_long(
                self.model, torch.from_numpy(sample["video_feats"]).to(dev),
                torch.from_numpy(sample["text_feats"]).to(dev), sample["meta"], self.cfg.post,
                *windows,
            )  # fmt: skip
        batch = collate_grounding([sample])
        inputs = {k: batch[k].to(dev) for k in MODEL_INPUTS}
        return postprocess(forward(self.model, inputs), batch["metas"], self.cfg.post)[0]


def load_grounding_model(
    run_dir: str | Path,
    checkpoint: str = "best",
    device: str = "cpu",
    overrides: Sequence[str] = (),
) -> GroundingPredictor:
    """A predictor from a trained run directory (its ``config.yaml`` + best or last checkpoint).

    >>> model = load_grounding_model("runs/sdst_qvh")              # doctest: +SKIP
    >>> row = model.predict(video_feats, query_feats, duration=150.0)  # doctest: +SKIP
    >>> row["pred_relevant_windows"][0]  # [start_s, end_s, score]  # doctest: +SKIP
    """
    cfg, model, ckpt = load_run(run_dir, overrides, checkpoint, device)
    return GroundingPredictor(model, cfg, ckpt)


__all__ = [
    "MODEL_INPUTS",
    "GroundingPredictor",
    "evaluate_rows",
    "forward",
    "load_grounding_model",
    "predict",
    "predict_long",
    "predict_rows",
    "prepare_sample",
    "window_settings",
]
