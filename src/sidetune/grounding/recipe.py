"""The SDST grounding recipe: config -> data -> model -> engine, and the ways back out.

- :func:`train` (``sidetune train``): trains with :func:`sidetune.engine.fit`; ``data.val``
  with ground truth is evaluated every ``train.eval_every`` epochs (postprocess -> official
  metrics), and the ``best`` checkpoint follows ``MR-full-mAP`` (QVHighlights) or ``R1@0.7``
  (Charades-STA / TACoS).
- :func:`predict` (``sidetune predict``): rebuilds a run from its saved ``config.yaml`` and
  best (else last) checkpoint and writes the official predictions jsonl; with ground truth it
  also scores them.
- :func:`info` (``sidetune info``): the per-module parameter table.
- :func:`load_grounding_model`: a predictor for one (video, query) pair from Python.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from sidetune.config import ConfigError, load_config
from sidetune.engine import (
    BEST,
    LAST,
    CheckpointError,
    DeviceLoader,
    autocast_context,
    checkpoint_dir,
    find_checkpoint,
    fit,
    load_meta,
    load_weights,
    resolve_device,
    seed_everything,
    stale_best,
)
from sidetune.errors import SidetuneError
from sidetune.features.store import check_finite
from sidetune.grounding.annotations import GroundingRecord
from sidetune.grounding.check import check_feature_shapes, scan_features
from sidetune.grounding.config import GroundingConfig
from sidetune.grounding.data import (
    DataConfig,
    GroundingDataset,
    collate_grounding,
    pool_bins,
    pool_clips,
    select_layers,
)
from sidetune.grounding.losses import SDSTCriterion
from sidetune.grounding.metrics import brief_metric_names
from sidetune.grounding.model import build_sdst
from sidetune.grounding.postprocess import PostprocessConfig, postprocess
from sidetune.utils.io import write_json, write_jsonl
from sidetune.utils.params import count_parameters, parameter_table

MODEL_INPUTS = ("video_feats", "video_mask", "text_feats", "text_mask")


def load_grounding_config(
    config: str | Path | None, overrides: Sequence[str] = ()
) -> GroundingConfig:
    """Schema defaults <- YAML (path or built-in name) <- ``key=value`` overrides."""
    return load_config(GroundingConfig, config, overrides)


def build_model(cfg: GroundingConfig) -> nn.Module:
    """The SDST model of ``cfg.model``, seeded by ``cfg.train.seed`` (same init on every rank)."""
    seed_everything(cfg.train.seed)
    return build_sdst(cfg.model)


def forward(model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
    return model(*(batch[k] for k in MODEL_INPUTS))


def predict_rows(
    model: nn.Module, loader: Iterable[Mapping[str, Any]], post: PostprocessConfig
) -> list[dict[str, Any]]:
    """Official prediction rows for every batch of ``loader`` (already on the model's device)."""
    rows: list[dict[str, Any]] = []
    for batch in loader:
        rows.extend(postprocess(forward(model, batch), batch["metas"], post))
    return rows


def evaluate_rows(
    rows: Sequence[Mapping[str, Any]], ground_truth: Sequence[GroundingRecord], dataset: str
) -> dict[str, Any]:
    """The official evaluator's output for prediction rows."""
    from sidetune.grounding.metrics import evaluate_predictions

    return evaluate_predictions(list(rows), ground_truth, dataset)


def brief_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The flat ``brief`` block of :func:`evaluate_predictions` as floats."""
    return {k: float(v) for k, v in metrics["brief"].items()}


def format_metrics(brief: Mapping[str, float], title: str = "metrics") -> str:
    """A two-column text table of the brief metrics, in the evaluator's key order."""
    width = max([len(k) for k in brief] + [len("metric")])
    lines = [f"{title}", f"{'metric':<{width}}  {'value':>8}", "-" * (width + 10)]
    lines += [f"{k:<{width}}  {v:>8.2f}" for k, v in brief.items()]
    return "\n".join(lines)


class GroundingRecipe:
    """The engine's :class:`~sidetune.engine.Recipe` for SDST.

    ``training_step``: SDST forward + :class:`SDSTCriterion` (``"loss"`` and every weighted
    term). ``evaluate``: postprocess every validation batch, score the rows against
    ``ground_truth`` with the official evaluator and return its ``brief`` block.
    """

    def __init__(
        self,
        criterion: SDSTCriterion,
        post: PostprocessConfig,
        ground_truth: Sequence[GroundingRecord] | None,
        dataset: str,
        best_metric: str,
    ) -> None:
        self.criterion = criterion
        self.post = post
        self.ground_truth = list(ground_truth) if ground_truth is not None else None
        self.dataset = dataset
        self.best_metric = best_metric
        self.metric_names = brief_metric_names(dataset)  # lets fit() check best_metric first
        self.last_predictions: list[dict[str, Any]] = []

    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        outputs = forward(model, batch)
        return self.criterion(outputs, batch["targets"])

    def evaluate(self, model: nn.Module, loader: Iterable[Any]) -> dict[str, float]:
        if self.ground_truth is None:
            raise SidetuneError("the validation split has no ground truth to evaluate against")
        rows = predict_rows(model, loader, self.post)
        self.last_predictions = rows
        return brief_metrics(evaluate_rows(rows, self.ground_truth, self.dataset))


def _build_recipe(cfg: GroundingConfig, val_set: GroundingDataset | None) -> GroundingRecipe:
    return GroundingRecipe(
        SDSTCriterion(cfg.loss),
        cfg.post,
        val_set.records if val_set is not None else None,
        cfg.data.dataset,
        cfg.resolved_best_metric,
    )


def run_training(
    cfg: GroundingConfig,
    resume: bool = False,
    callbacks: Sequence[Callable[[dict[str, Any]], None]] = (),
) -> dict[str, Any]:
    """Train SDST as ``cfg`` says; returns the engine's summary (see :func:`sidetune.engine.fit`)."""
    if cfg.data.train is None:
        raise ConfigError("data.train is null: set it to the training annotation jsonl")
    train_set = GroundingDataset(cfg.data, "train")
    check_feature_shapes(train_set, cfg)
    val_set = None
    if cfg.data.val is not None:
        val_set = GroundingDataset(cfg.data, "val")
        if not val_set.has_targets:
            print(f"note: {cfg.data.val} has no ground truth; training without validation")
            val_set = None
        else:
            check_feature_shapes(val_set, cfg)
            # a bad validation file would otherwise surface only after the first epoch
            scan_features(val_set, progress=cfg.train.progress)
    model = build_model(cfg)
    recipe = _build_recipe(cfg, val_set)
    return fit(
        model,
        recipe,
        train_set,
        val_set,
        collate_grounding,
        cfg.train,
        cfg.run_dir,
        resume=resume,
        config=cfg,
        callbacks=callbacks,
    )


def train(config: str | Path, overrides: Sequence[str] = (), resume: bool = False) -> int:
    """``sidetune train CONFIG [key=value ...] [--resume]``."""
    cfg = load_grounding_config(config, overrides)
    summary = run_training(cfg, resume=resume)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 0
    best = summary["best"]
    where = Path(cfg.run_dir) / "checkpoints"
    if best is None:
        print(
            f"trained {summary['epochs']} epochs ({summary['step']} steps); checkpoint: {where / LAST}"
        )
    else:
        print(
            f"trained {summary['epochs']} epochs ({summary['step']} steps); best {summary['best_metric']}="
            f"{best:.2f} at epoch {summary['best_epoch']}; checkpoints: {where}"
        )
    return 0


def info(config: str | Path, overrides: Sequence[str] = (), depth: int = 2) -> int:
    """``sidetune info CONFIG``: per-module parameter table of the config's model."""
    cfg = load_grounding_config(config, overrides)
    model = build_sdst(cfg.model)
    print(parameter_table(model, depth=depth))
    return 0


# ---------------------------------------------------------------------------------------------
# Trained runs: predict from the CLI, or from Python for one (video, query) pair
# ---------------------------------------------------------------------------------------------


def resolve_checkpoint(run_dir: str | Path, which: str = "best") -> Path:
    """``best`` (falling back to ``last`` when no validation ran), ``last``, or a directory."""
    run_dir = Path(run_dir)
    candidates = {"best": [BEST, LAST], "last": [LAST]}.get(which)
    if candidates is None:
        found = find_checkpoint(Path(which))
        if found is None:
            raise CheckpointError(
                f"{which}: not a checkpoint directory (needs meta.json + model.safetensors)"
            )
        return found
    for name in candidates:
        found = find_checkpoint(checkpoint_dir(run_dir, name))
        if found is not None:
            warning = stale_best(run_dir) if name == BEST else None
            if warning is not None:
                print(warning, file=sys.stderr, flush=True)
            return found
    raise CheckpointError(f"{run_dir}: no checkpoint found under {run_dir / 'checkpoints'}")


def load_run(
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    checkpoint: str = "best",
    device: str = "cpu",
) -> tuple[GroundingConfig, nn.Module, Path]:
    """The run's saved config (with ``overrides``) and its model with the checkpoint's weights, in eval mode."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: not found; is {run_dir} a grounding run directory?")
    cfg = load_grounding_config(cfg_path, overrides)
    ckpt = resolve_checkpoint(run_dir, checkpoint)
    model = build_sdst(cfg.model)
    load_weights(model, ckpt)
    model.to(resolve_device(device)).eval()
    return cfg, model, ckpt


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
    if split not in ("train", "val", "test"):
        raise ConfigError(f"split must be train, val or test, got {split!r}")
    cfg_path = Path(run_dir) / "config.yaml"
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: not found; is {run_dir} a grounding run directory?")
    dev = resolve_device(device or load_grounding_config(cfg_path, overrides).train.device)
    cfg, model, ckpt = load_run(run_dir, overrides, checkpoint, device=str(dev))
    if getattr(cfg.data, split) is None:
        raise ConfigError(
            f"data.{split} is null in {Path(run_dir) / 'config.yaml'}; pass data.{split}=PATH"
        )
    dataset = GroundingDataset(cfg.data, split)  # type: ignore[arg-type]
    check_feature_shapes(dataset, cfg)
    loader = DataLoader(
        dataset,
        batch_size=batch_size or cfg.train.eval_batch_size or cfg.train.batch_size,
        shuffle=False,
        collate_fn=collate_grounding,
        num_workers=cfg.train.num_workers,
    )
    with torch.no_grad(), autocast_context(cfg.train.amp, dev):
        rows = predict_rows(model, DeviceLoader(loader, dev), cfg.post)
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
    if data.max_clips is not None and num_clips > data.max_clips:
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
    ) -> dict[str, Any]:
        """Moments and per-clip saliency for one (video, query) pair.

        Args:
            video_feats: ``[T, F_v]`` or ``[K, T, F_v]`` (numpy or torch).
            query_feats: ``[L, F_t]`` or ``[K, L, F_t]``.
            duration: video length in seconds (windows are clamped to it);
                default ``T * clip_length``.
            clip_length: seconds per feature clip; default the run's ``data.clip_length``
                (2 s QVHighlights / TACoS, 1 s Charades-STA).

        Returns:
            The official prediction row: ``{qid, query, vid, pred_relevant_windows:
            [[start_s, end_s, score], ...] best first, pred_saliency_scores: [float] * T}``.
        """
        cl = float(clip_length if clip_length is not None else self.cfg.data.resolved_clip_length)
        if cl <= 0:
            raise SidetuneError(f"clip_length must be > 0, got {cl}")
        sample = prepare_sample(
            self.cfg.data,
            self.cfg.model.num_levels,
            _as_numpy(video_feats),
            _as_numpy(query_feats),
            cl,
            duration,
            {"qid": qid, "vid": vid, "query": query},
        )
        batch = collate_grounding([sample])
        dev = self.device
        inputs = {k: batch[k].to(dev) for k in MODEL_INPUTS}
        outputs = forward(self.model, inputs)
        return postprocess(outputs, batch["metas"], self.cfg.post)[0]


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


def run_summary(run_dir: str | Path) -> dict[str, Any]:
    """Epoch, step and metrics of a run's last checkpoint (for reports)."""
    ckpt = resolve_checkpoint(run_dir, "last")
    meta = load_meta(ckpt)
    return {
        k: meta.get(k) for k in ("epoch", "step", "metrics", "best_metric", "best", "best_epoch")
    }


def parameter_summary(cfg: GroundingConfig) -> tuple[int, int]:
    """``(trainable, total)`` parameters of ``cfg.model``."""
    return count_parameters(build_sdst(cfg.model))


__all__ = [
    "GroundingPredictor",
    "GroundingRecipe",
    "brief_metrics",
    "format_metrics",
    "info",
    "load_grounding_config",
    "load_grounding_model",
    "predict",
    "run_training",
    "train",
]
