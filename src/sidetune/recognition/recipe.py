"""TDS-CLIP training recipe: ``sidetune train`` / ``sidetune info`` for ``task: recognition``.

* loss: cross-entropy with label smoothing (``eval.label_smoothing``, 0.1);
* optimiser: AdamW over the trainable parameters only (the frozen CLIP never reaches it),
  warm-up + cosine (``train.*``, lr 1e-3 / wd 0.15 for B/16);
* validation: ``eval.num_crops`` x ``eval.num_clips`` views per video, softmax averaged,
  top-1 / top-5 (``best_metric = "top1"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sidetune.config import ConfigError, load_config
from sidetune.engine.optim import param_groups as engine_param_groups
from sidetune.engine.seed import seed_everything
from sidetune.recognition.config import RecognitionConfig
from sidetune.recognition.data import (
    VideoDataset,
    collate_videos,
    load_label_names,
    parse_video_list,
)
from sidetune.recognition.metrics import AccuracyMeter, average_views
from sidetune.recognition.model import TDSCLIP, build_clip_vision, build_tds_clip
from sidetune.recognition.official_transforms import OfficialEvalTransform, OfficialTrainTransform
from sidetune.recognition.rand_augment import RandAugmentPolicy
from sidetune.recognition.transforms import EvalTransform, TrainTransform, flip_label_map
from sidetune.utils.params import parameter_table


class TDSRecipe:
    """The engine's :class:`~sidetune.engine.Recipe` for TDS-CLIP.

    Batches: ``{"frames": (B, T, n, 3, S, S), "label": (B,)}`` for training and
    ``{"frames": (B, V, T, n, 3, S, S), "label": (B,)}`` for evaluation.
    """

    best_metric = "top1"

    def __init__(self, cfg: RecognitionConfig) -> None:
        self.cfg = cfg
        self.label_smoothing = cfg.eval.label_smoothing

    def training_step(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        logits = model(batch["frames"])
        labels = batch["label"]
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        acc = (logits.detach().argmax(-1) == labels).float().mean() * 100.0
        return {"loss": loss, "train_top1": acc}

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, loader: Iterable[dict[str, torch.Tensor]]
    ) -> dict[str, float]:
        meter = AccuracyMeter((1, 5))
        for batch in loader:
            frames, labels = batch["frames"], batch["label"]
            if frames.ndim == 6:  # single view
                frames = frames.unsqueeze(1)
            b, v = frames.shape[:2]
            logits = model(frames.flatten(0, 1)).unflatten(0, (b, v))  # (B, V, C)
            probs = average_views(logits.float())
            nll = -probs.gather(1, labels[:, None]).clamp_min(1e-12).log().sum()
            meter.update(probs, labels, nll)
        return meter.compute()

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """AdamW groups of the trainable parameters (CLIP's are frozen and excluded)."""
        return engine_param_groups(model, self.cfg.train)


def load_recognition_config(
    config: str | Path | None, overrides: Sequence[str] = ()
) -> RecognitionConfig:
    return load_config(RecognitionConfig, config, overrides)


def _list_path(cfg: RecognitionConfig, value: str | None) -> Path | None:
    if value is None:
        return None
    p = Path(value)
    if not p.is_absolute() and cfg.data.root:
        p = Path(cfg.data.root) / p
    return p


def load_names(cfg: RecognitionConfig) -> list[str] | None:
    """Class names of ``data.labels`` (None without one); their count must be ``num_classes``."""
    labels_path = _list_path(cfg, cfg.data.labels)
    if labels_path is None:
        return None
    names = load_label_names(labels_path)
    if len(names) != cfg.model.num_classes:
        raise ConfigError(
            f"model.num_classes={cfg.model.num_classes} but {labels_path} lists {len(names)} classes"
        )
    return names


def _common(cfg: RecognitionConfig) -> dict[str, Any]:
    d = cfg.data
    return dict(
        num_segments=d.num_segments,
        num_local=cfg.model.num_local_frames,
        frame_template=d.frame_template,
        frame_index_base=d.frame_index_base,
    )


def build_eval_transform(cfg: RecognitionConfig) -> EvalTransform:
    """The test views of ``eval.*`` (see :class:`RecognitionEvalConfig`)."""
    d, e = cfg.data, cfg.eval
    if e.protocol == "tsn":
        return EvalTransform(d.input_size, e.num_crops, e.resize, d.mean, d.std)
    return OfficialEvalTransform(
        d.input_size, e.num_crops, e.resolved_scale(d.input_size), d.mean, d.std
    )


def build_eval_set(cfg: RecognitionConfig, list_value: str | None) -> VideoDataset | None:
    """Multi-view test dataset of a list (``data.val`` / ``data.test``); needs no training data."""
    list_path = _list_path(cfg, list_value)
    if list_path is None:
        return None
    records = parse_video_list(
        list_path, cfg.data.root or None, cfg.data.format, cfg.model.num_classes
    )
    return VideoDataset(
        records,
        train=False,
        transform=build_eval_transform(cfg),
        num_clips=cfg.eval.num_clips,
        protocol=cfg.eval.protocol,
        **_common(cfg),
    )


def build_train_set(cfg: RecognitionConfig, names: list[str] | None) -> VideoDataset:
    d = cfg.data
    train_list = _list_path(cfg, d.train)
    if train_list is None:
        raise ConfigError("data.train: a training video list is required")
    records = parse_video_list(train_list, d.root or None, d.format, cfg.model.num_classes)
    if not d.flip or d.flip_swap == "none":
        flip_map: dict[int, int] = {}
    elif d.flip_swap == "pairs":
        flip_map = flip_label_map(None, d.flip_pairs)
    else:
        if names is None and d.flip:
            raise ConfigError(
                "data.flip_swap=auto needs data.labels (class names) to know which classes a flip swaps; "
                "set data.flip_swap=none or pairs, or data.flip=false"
            )
        flip_map = flip_label_map(names, d.flip_pairs)
    train_tf: TrainTransform | OfficialTrainTransform
    if d.pipeline != "tsn":
        try:
            policy = RandAugmentPolicy.parse(d.rand_augment_policy) if d.rand_augment else None
        except ValueError as exc:
            raise ConfigError(f"data.rand_augment_policy: {exc}") from None
        train_tf = OfficialTrainTransform(
            d.input_size,
            d.resolved_scale(),
            policy,
            flip_map,
            d.flip,
            d.grayscale_prob,
            d.mean,
            d.std,
        )
        return VideoDataset(
            records,
            train=True,
            transform=train_tf,
            protocol=d.pipeline,
            num_sample=d.num_sample,
            **_common(cfg),
        )
    train_tf = TrainTransform(
        d.input_size,
        area=(d.min_area, d.max_area),
        aspect=(d.min_aspect, d.max_aspect),
        flip=d.flip,
        flip_map=flip_map,
        grayscale_prob=d.grayscale_prob,
        rand_augment_ops=d.rand_augment_ops if d.rand_augment else 0,
        rand_augment_magnitude=d.rand_augment_magnitude,
        mean=d.mean,
        std=d.std,
    )
    return VideoDataset(
        records, train=True, transform=train_tf, num_sample=d.num_sample, **_common(cfg)
    )


def build_datasets(
    cfg: RecognitionConfig,
) -> tuple[VideoDataset, VideoDataset | None, list[str] | None]:
    """Train / validation datasets of a config (and the class names when a labels CSV is given)."""
    if _list_path(cfg, cfg.data.train) is None:
        raise ConfigError("data.train: a training video list is required")
    names = load_names(cfg)
    return build_train_set(cfg, names), build_eval_set(cfg, cfg.data.val), names


def build_model(cfg: RecognitionConfig) -> TDSCLIP:
    """The TDS-CLIP of ``cfg.model``, its side network drawn from ``train.seed``.

    Seeded here, before any parameter is created, so two runs of one config start from the
    same weights (the engine seeds again later, for the data order and dropout).
    """
    seed_everything(cfg.train.seed)
    model = build_tds_clip(cfg.model)
    image_size = model.clip.config.image_size
    if cfg.data.input_size != image_size:
        raise ConfigError(
            f"data.input_size={cfg.data.input_size} but the CLIP tower expects {image_size}x{image_size} inputs"
        )
    return model


def train(config: str | Path, overrides: Sequence[str] = (), resume: bool = False) -> int:
    """``sidetune train CONFIG``: build data + model from the config and run the engine."""
    from sidetune.engine import fit
    from sidetune.recognition.check import screen_videos

    cfg = load_recognition_config(config, overrides)
    train_set, val_set, _ = build_datasets(cfg)
    # every video opened before epoch 1: unreadable ones stop the run (or are skipped) now
    train_data, val_data = screen_videos(
        train_set, val_set, cfg.data.skip_unreadable, progress=cfg.train.progress
    )
    model = build_model(cfg)
    print(parameter_table(model, depth=1).splitlines()[-1], flush=True)
    summary = fit(
        model,
        TDSRecipe(cfg),
        train_data,
        val_data,
        collate_videos,
        cfg.train,
        cfg.run_dir,
        resume=resume,
        config=cfg,
    )
    best = summary.get("best")
    last = summary.get("metrics") or {}
    if best is not None:
        print(
            f"done: best top1 {best:.2f} @ epoch {summary.get('best_epoch')}; "
            f"last top1 {last.get('top1', float('nan')):.2f} top5 {last.get('top5', float('nan')):.2f}; "
            f"run dir {cfg.run_dir}"
        )
    else:
        print(f"done: {summary.get('epochs')} epochs (no validation set); run dir {cfg.run_dir}")
    return 0


def evaluate_run(
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    which: str = "best",
    out: str | Path | None = None,
) -> dict[str, float]:
    """Multi-view test of a trained run: ``run_dir/config.yaml`` + ``overrides`` (e.g.
    ``data.val=test.txt eval.num_crops=3 eval.num_clips=2``), weights of checkpoint ``which``.

    Writes the metrics to ``out`` (default ``run_dir/test_<which>.json``) and returns them.
    """
    from torch.utils.data import DataLoader

    from sidetune.engine import (
        checkpoint_dir,
        evaluate_model,
        load_weights,
        resolve_device,
        stale_best,
    )
    from sidetune.utils.io import write_json

    run_dir = Path(run_dir)
    cfg = load_recognition_config(run_dir / "config.yaml", overrides)
    load_names(cfg)  # a labels file that disagrees with the model is an error here too
    val_set = build_eval_set(cfg, cfg.data.val)  # no training list needed
    if val_set is None:
        raise ConfigError("data.val: a list of videos to evaluate is required")
    model = build_model(cfg)
    warning = stale_best(run_dir) if which == "best" else None
    if warning is not None:
        print(warning, flush=True)
    load_weights(model, checkpoint_dir(run_dir, which))
    device = resolve_device(cfg.train.device)
    model.to(device)
    loader = DataLoader(
        val_set,
        batch_size=cfg.train.eval_batch_size or cfg.train.batch_size,
        collate_fn=collate_videos,
        num_workers=cfg.train.num_workers,
    )
    metrics = evaluate_model(model, TDSRecipe(cfg), loader, device, cfg.eval.amp)
    metrics["views"] = float(cfg.eval.num_crops * cfg.eval.num_clips)
    write_json(out or run_dir / f"test_{which}.json", metrics)
    return metrics


def info(config: str | Path, overrides: Sequence[str] = (), depth: int = 2) -> int:
    """``sidetune info CONFIG``: per-module trainable / total parameter table of the model."""
    cfg = load_recognition_config(config, overrides)
    # Counts need the architecture only: no weights are read (a missing checkpoint dir falls
    # back to the named preset).
    model = build_tds_clip(cfg.model, build_clip_vision(cfg.model, weights=False))
    print(
        f"TDS-CLIP: backbone {cfg.model.backbone}, side width {cfg.model.side_dim}, "
        f"{cfg.model.num_classes} classes, n={cfg.model.num_local_frames} local frames, "
        f"TD-Adapter {'on (' + cfg.model.td_layers + ')' if cfg.model.td_adapter else 'off'}"
    )
    print(parameter_table(model, depth=depth))
    return 0
