"""``train.*`` keys: the optimisation recipe shared by every task (SDST Table A defaults)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class TrainConfig:
    """Optimiser, schedule and loop settings.

    Defaults are the SDST recipe (supplementary Table A): AdamW lr 1e-4, weight decay 1e-4,
    linear warm-up over 2000 iterations from 0.001 x lr, step decay x0.1, gradient-norm
    clipping at 35, batch 32.

    The step schedule has two forms. ``lr_milestones: [20]`` multiplies the lr by ``step_gamma``
    once at each listed epoch (the nncore/mmcv ``step=[20]`` form of the R2-Tuning recipe the
    paper keeps: one decay at epoch 20; Charades-STA ``[30]``); the SDST presets use it.
    ``step_epochs: N`` decays every N epochs (periodic, torch ``StepLR``). Set exactly one:
    the other must be null.

    ``batch_size`` is the *global* batch: under ``torchrun`` with N processes each process
    loads ``batch_size // N`` samples, so the recipe (and its warm-up in iterations) does not
    change with the process count.
    """

    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    # Weight decay on biases and normalisation weights too (as the reference ST code does);
    # false puts every 1-D parameter in a no-decay group.
    decay_norm_and_bias: bool = True
    warmup_iters: int = 2000
    warmup_ratio: float = 0.001
    schedule: Literal["step", "cosine", "constant"] = "step"
    # Step schedule, periodic form: multiply the lr by step_gamma every step_epochs epochs.
    step_epochs: int | None = 20
    # Step schedule, milestone form: multiply the lr by step_gamma at each of these epochs
    # (0-based epoch index at which the decayed lr starts). Needs step_epochs=null.
    lr_milestones: list[int] | None = None
    step_gamma: float = 0.1
    min_lr_ratio: float = 0.0  # cosine schedule: floor as a fraction of lr
    clip_grad_norm: float = 35.0  # <= 0 disables clipping
    # bf16: autocast on GPU and CPU; fp16: GPU only (with a grad scaler), ignored on CPU.
    amp: Literal["none", "bf16", "fp16"] = "none"
    seed: int = 0
    deterministic: bool = False
    num_workers: int = 0
    drop_last: bool = False
    log_every: int = 10  # iterations between loss logging (the only host syncs of a step)
    eval_every: int = 1  # epochs between validation runs (the last epoch is always evaluated)
    eval_batch_size: int = 0  # 0: same as the per-process training batch
    # Wall-clock budget in seconds (0 = none): after the epoch that crosses it, evaluate,
    # checkpoint and stop early (the schedule is not compressed). The demo uses it as a guard.
    max_time_s: float = 0.0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    progress: bool = True  # tqdm bar on rank 0
    tensorboard: bool = True  # run_dir/tb
    ddp_find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"train.epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"train.batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        if self.warmup_iters < 0 or not 0.0 < self.warmup_ratio <= 1.0:
            raise ValueError("train.warmup_iters must be >= 0 and train.warmup_ratio in (0, 1]")
        if self.step_epochs is not None and self.step_epochs < 1:
            raise ValueError(f"train.step_epochs must be >= 1 or null, got {self.step_epochs}")
        if self.lr_milestones is not None:
            ms = list(self.lr_milestones)
            if not ms or any(m < 1 for m in ms) or ms != sorted(set(ms)):
                raise ValueError(
                    "train.lr_milestones must be a non-empty, strictly increasing list of "
                    f"epochs >= 1, got {ms}"
                )
            if self.step_epochs is not None:
                raise ValueError(
                    f"train.lr_milestones={ms} and train.step_epochs={self.step_epochs} are both "
                    "set; set the one you do not want to null (e.g. train.step_epochs=null)"
                )
        elif self.schedule == "step" and self.step_epochs is None:
            raise ValueError(
                "train.schedule=step needs train.step_epochs (periodic) or train.lr_milestones"
            )
        if self.max_time_s < 0:
            raise ValueError(f"train.max_time_s must be >= 0, got {self.max_time_s}")
        if self.log_every < 1 or self.eval_every < 1:
            raise ValueError("train.log_every and train.eval_every must be >= 1")
