"""AdamW parameter groups and the warm-up + step/cosine learning-rate schedule.

The schedule is a pure function of the iteration counter (:func:`lr_factor`), so resuming
only needs that counter: no closure has to be pickled.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from sidetune.engine.config import TrainConfig


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Trainable parameters in AdamW groups.

    With ``decay_norm_and_bias`` (default, as the SDST reference recipe) one group decays
    everything; otherwise 1-D parameters (biases, LayerNorm weights) get no weight decay.
    Frozen parameters never reach the optimiser.
    """
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    if cfg.decay_norm_and_bias:
        return [{"params": [p for _, p in trainable], "weight_decay": cfg.weight_decay}]
    decay = [p for _, p in trainable if p.ndim > 1]
    no_decay = [p for _, p in trainable if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(
    groups: Iterable[dict[str, Any]], cfg: TrainConfig, fused: bool = False
) -> torch.optim.AdamW:
    kwargs: dict[str, Any] = {
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "betas": tuple(cfg.betas),
    }
    if fused:
        kwargs["fused"] = True
    return torch.optim.AdamW(list(groups), **kwargs)


def lr_factor(step: int, cfg: TrainConfig, iters_per_epoch: int) -> float:
    """Multiplier of the base lr at (0-based) iteration ``step``.

    Linear warm-up (mmcv style) from ``warmup_ratio`` to 1 over ``warmup_iters`` iterations,
    times the decay: step (``step_gamma`` once at each epoch of ``lr_milestones``, or every
    ``step_epochs`` epochs), cosine to ``min_lr_ratio`` over the whole run, or constant.
    """
    ipe = max(1, iters_per_epoch)
    if cfg.schedule == "step":
        decay = cfg.step_gamma ** num_decays(step // ipe, cfg)
    elif cfg.schedule == "cosine":
        total = max(1, cfg.epochs * ipe)
        progress = min(1.0, step / total)
        decay = cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (
            1.0 + math.cos(math.pi * progress)
        )
    else:
        decay = 1.0
    if step < cfg.warmup_iters:
        decay *= 1.0 - (1.0 - step / cfg.warmup_iters) * (1.0 - cfg.warmup_ratio)
    return decay


def num_decays(epoch: int, cfg: TrainConfig) -> int:
    """How many step decays apply during (0-based) ``epoch``.

    Milestones (nncore/mmcv ``step=[20]``, torch ``MultiStepLR``): one per milestone
    ``<= epoch``. Periodic: ``epoch // step_epochs``.
    """
    if cfg.lr_milestones is not None:
        return bisect.bisect_right(cfg.lr_milestones, epoch)
    assert cfg.step_epochs is not None  # TrainConfig guarantees one of the two forms
    return epoch // cfg.step_epochs


class WarmupSchedule:
    """Sets each param group's lr to ``initial_lr * lr_factor(step)``; call :meth:`step` per iteration."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, cfg: TrainConfig, iters_per_epoch: int
    ) -> None:
        self.optimizer = optimizer
        self.cfg = cfg
        self.iters_per_epoch = iters_per_epoch
        self.last_step = 0
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self._apply()

    def _apply(self) -> None:
        f = lr_factor(self.last_step, self.cfg, self.iters_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * f

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "iters_per_epoch": self.iters_per_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = int(state["last_step"])
        self._apply()
