"""The SDST grounding recipe: config -> data -> model -> engine, and the ways back out.

- :func:`train` (``sidetune train``): trains with :func:`sidetune.engine.fit`; ``data.val``
  with ground truth is evaluated every ``train.eval_every`` epochs (postprocess -> official
  metrics), and the ``best`` checkpoint follows ``MR-full-mAP`` (QVHighlights) or ``R1@0.7``
  (Charades-STA / TACoS).
- :func:`info` (``sidetune info``): the per-module parameter table.

How a trained run is used (``predict``, ``load_grounding_model``, sliding windows, ``Grounder``)
lives in :mod:`sidetune.grounding.inference`; the names are re-exported here for old imports.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sidetune.config import ConfigError
from sidetune.engine import LAST, fit, seed_everything
from sidetune.errors import SidetuneError
from sidetune.grounding.annotations import GroundingRecord
from sidetune.grounding.config import GroundingConfig
from sidetune.grounding.data import GroundingDataset, collate_grounding
from sidetune.grounding.losses import SDSTCriterion
from sidetune.grounding.model import build_sdst
from sidetune.grounding.postprocess import PostprocessConfig
from sidetune.grounding.predictor import (  # re-exported: their old home
    MODEL_INPUTS,
    GroundingPredictor,
    check_feature_shapes,
    evaluate_rows,
    forward,
    load_grounding_model,
    predict,
    predict_rows,
    prepare_sample,
    window_settings,
)
from sidetune.grounding.runs import (
    EXTRACT_META,
    find_extract_meta,
    load_grounding_config,
    load_run,
    read_extract_meta,
    resolve_checkpoint,
    run_summary,
)
from sidetune.utils.io import write_json
from sidetune.utils.params import count_parameters, parameter_table


def build_model(cfg: GroundingConfig) -> nn.Module:
    """The SDST model of ``cfg.model``, seeded by ``cfg.train.seed`` (same init on every rank)."""
    seed_everything(cfg.train.seed)
    return build_sdst(cfg.model)


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
        windows: tuple[int, int] | None = None,
    ) -> None:
        self.criterion = criterion
        self.post = post
        self.ground_truth = list(ground_truth) if ground_truth is not None else None
        self.dataset = dataset
        self.best_metric = best_metric
        self.windows = windows  # (window, stride) with data.long_video=window
        self.last_predictions: list[dict[str, Any]] = []

    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        outputs = forward(model, batch)
        return self.criterion(outputs, batch["targets"])

    def evaluate(self, model: nn.Module, loader: Iterable[Any]) -> dict[str, float]:
        if self.ground_truth is None:
            raise SidetuneError("the validation split has no ground truth to evaluate against")
        rows = predict_rows(model, loader, self.post, self.windows)
        self.last_predictions = rows
        return brief_metrics(evaluate_rows(rows, self.ground_truth, self.dataset))


def _build_recipe(cfg: GroundingConfig, val_set: GroundingDataset | None) -> GroundingRecipe:
    return GroundingRecipe(
        SDSTCriterion(cfg.loss),
        cfg.post,
        val_set.records if val_set is not None else None,
        cfg.data.dataset,
        cfg.resolved_best_metric,
        window_settings(cfg.data),
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
    model = build_model(cfg)
    recipe = _build_recipe(cfg, val_set)
    summary = fit(
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
    record_extract_meta(cfg)
    return summary


def record_extract_meta(cfg: GroundingConfig) -> Path | None:
    """Copy the training features' ``extract_meta.json`` into the run (``sidetune ground`` reads it)."""
    found = find_extract_meta(cfg.data.video_features)
    if found is None:
        return None
    dest = Path(cfg.run_dir) / EXTRACT_META
    write_json(dest, read_extract_meta(found))
    return dest


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


def parameter_summary(cfg: GroundingConfig) -> tuple[int, int]:
    """``(trainable, total)`` parameters of ``cfg.model``."""
    return count_parameters(build_sdst(cfg.model))


__all__ = [
    "MODEL_INPUTS",
    "GroundingPredictor",
    "GroundingRecipe",
    "brief_metrics",
    "check_feature_shapes",
    "evaluate_rows",
    "format_metrics",
    "forward",
    "info",
    "load_grounding_config",
    "load_grounding_model",
    "load_run",
    "predict",
    "predict_rows",
    "prepare_sample",
    "record_extract_meta",
    "resolve_checkpoint",
    "run_summary",
    "run_training",
    "train",
]
