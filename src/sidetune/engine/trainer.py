"""The training loop shared by every task: :func:`fit` drives a :class:`Recipe`.

One epoch = one pass over a ``DistributedSampler`` whose order is a function of
``(seed, epoch)`` only, so a resumed run replays exactly the batches it would have seen.
Checkpoints are written at the end of every epoch (``last``) and whenever the recipe's
``best_metric`` improves (``best``); with ``resume=True`` the run continues from ``last`` with
the model, optimiser, schedule, grad-scaler and every rank's RNG states restored.

Crash guarantees (``kill -9`` at any instant, any number of times in a row):

- ``best`` is written *before* ``last`` records the new best value, so ``last`` never points at
  a best that is not on disk; a resumed run replays the epoch and rewrites ``best`` itself.
  On resume ``best`` is checked against ``last``'s ``best_epoch`` and repaired from ``last``
  when ``last`` holds those weights (older runs), or reported when it cannot be.
- Each checkpoint swap keeps one complete copy findable (see :mod:`sidetune.engine.checkpoint`);
  at start the newest complete copy is moved back in place and stale temporaries are removed.
- ``log.jsonl`` is cut back to the checkpoint's step on resume (no duplicate records).
- ``run_dir`` is locked (:class:`~sidetune.engine.lock.RunLock`) for the whole run, so a
  second training into the same directory stops with an error naming the first one.

Under ``torchrun`` the model is wrapped in DDP; only rank 0 writes files and evaluates (over
the whole validation set, with the unwrapped model, so metrics equal a single-process run)
while the other ranks wait at a barrier.

The step does no host synchronisation except every ``log_every`` iterations, where the
accumulated loss terms are read once.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, SequentialSampler
from tqdm import tqdm

from sidetune.config import save_config, to_dict
from sidetune.engine import distributed as D
from sidetune.engine.checkpoint import (
    CheckpointError,
    crash_point,
    find_checkpoint,
    load_meta,
    load_train_state,
    load_weights,
    save_checkpoint,
    unwrap,
)
from sidetune.engine.config import TrainConfig
from sidetune.engine.lock import RunLock
from sidetune.engine.logging import RunLogger
from sidetune.engine.optim import WarmupSchedule, build_optimizer, param_groups
from sidetune.engine.run_state import (
    BEST,
    LAST,
    check_best_on_resume,
    checkpoint_dir,
    prepare_run_dir,
)
from sidetune.engine.seed import get_rng_state, seed_everything, set_rng_state, worker_init_fn
from sidetune.errors import SidetuneError


@runtime_checkable
class Recipe(Protocol):
    """What a task gives the engine.

    ``training_step`` receives a batch already on the training device and returns a dict
    with a scalar ``"loss"`` (back-propagated) and any other scalar tensors (logged).
    ``evaluate`` receives the model (unwrapped, in eval mode, under ``torch.no_grad``) and an
    iterable of device batches, and returns a flat dict of floats containing ``best_metric``
    (higher is better). Under DDP only rank 0 calls ``evaluate``, so it must not run
    collectives (no all-reduce inside, e.g. no DDP-aware loss). A recipe may also define
    ``param_groups(model) -> list[dict]`` and ``metric_names`` (the keys ``evaluate`` will
    return), which lets :func:`fit` reject a ``best_metric`` before the first epoch.
    """

    best_metric: str

    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]: ...

    def evaluate(self, model: nn.Module, loader: Iterable[Any]) -> dict[str, float]: ...


class RunExistsError(SidetuneError):
    """``run_dir`` already holds a checkpoint and ``resume`` was not asked for."""


def move_to(obj: Any, device: torch.device) -> Any:
    """Tensors inside dicts / lists / tuples to ``device``; everything else unchanged."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [move_to(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(move_to(v, device) for v in obj)
    return obj


class DeviceLoader:
    """Wraps a DataLoader so each batch arrives on ``device``."""

    def __init__(self, loader: Iterable[Any], device: torch.device) -> None:
        self.loader = loader
        self.device = device

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield move_to(batch, self.device)

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]


def autocast_context(amp: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 / fp16 autocast on GPU, bf16 autocast on CPU; a no-op with ``amp=none`` and for
    fp16 on CPU (fp16 needs the GPU's grad scaler)."""
    if amp == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if amp == "fp16" and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _make_scaler(cfg: TrainConfig, device: torch.device) -> torch.amp.GradScaler | None:
    if cfg.amp == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


class _Progress:
    """Iterates ``loader`` under a tqdm bar (``len`` kept, so recipes may still size by it)."""

    def __init__(self, loader: Iterable[Any], desc: str) -> None:
        self.loader = loader
        self.desc = desc

    def __iter__(self) -> Iterator[Any]:
        total = len(self.loader) if hasattr(self.loader, "__len__") else None  # type: ignore[arg-type]
        with tqdm(total=total, desc=self.desc, dynamic_ncols=True, leave=False) as bar:
            for batch in self.loader:
                yield batch
                bar.update(1)

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]


def evaluate_model(
    model: nn.Module,
    recipe: Recipe,
    loader: Iterable[Any],
    device: torch.device,
    amp: str = "none",
    progress: str | None = None,
) -> dict[str, float]:
    """Run ``recipe.evaluate`` on the unwrapped model in eval mode, without gradients.

    ``progress``: label of a tqdm bar over the batches (None: no bar).
    """
    bare = unwrap(model)
    was_training = bare.training
    bare.eval()
    batches: Iterable[Any] = DeviceLoader(loader, device)
    if progress is not None:
        batches = _Progress(batches, progress)
    try:
        with torch.no_grad(), autocast_context(amp, device):
            metrics = recipe.evaluate(bare, batches)
    finally:
        bare.train(was_training)
    return {k: float(v) for k, v in metrics.items()}


def check_best_metric(recipe: Recipe) -> None:
    """Reject a ``best_metric`` the recipe will never report, before any training."""
    names = getattr(recipe, "metric_names", None)
    if names is not None and recipe.best_metric not in names:
        raise SidetuneError(
            f"best_metric {recipe.best_metric!r} is not among the evaluation metrics of this "
            f"dataset: {', '.join(sorted(names))}"
        )


def fit(
    model: nn.Module,
    recipe: Recipe,
    train_set: Dataset[Any],
    val_set: Dataset[Any] | None,
    collate_fn: Callable[[list[Any]], Any] | None,
    cfg: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    config: Any = None,
    callbacks: Sequence[Callable[[dict[str, Any]], None]] = (),
) -> dict[str, Any]:
    """Train ``model`` with ``recipe`` for ``cfg.epochs`` epochs; return the run summary.

    ``config`` (the task's full resolved config dataclass) is saved as ``run_dir/config.yaml``
    and embedded in every checkpoint's sidecar. ``callbacks`` are called after every optimiser
    step with ``{"epoch", "step", "loss"}`` (tests use them to simulate a crash).

    Returns ``{"epochs", "stopped_early", "step", "best_metric", "best", "best_epoch", "metrics",
    "train"}``: ``epochs`` counts the epochs completed (fewer than ``cfg.epochs`` only when
    ``cfg.max_time_s`` stopped the run), ``metrics`` is the last validation result and
    ``train`` the last epoch's mean loss terms.
    """
    run_dir = Path(run_dir)
    check_best_metric(recipe)
    env = D.init_distributed(cfg.device)
    logger: RunLogger | None = None
    lock: RunLock | None = None
    try:
        device = env.device
        if cfg.batch_size % env.world_size:
            raise SidetuneError(
                f"train.batch_size={cfg.batch_size} is the global batch and must be divisible by "
                f"the number of processes ({env.world_size})"
            )
        if env.is_main:
            lock = RunLock(run_dir).acquire()
            dropped = prepare_run_dir(run_dir, resume)
            if dropped:
                print(f"resume: dropped {dropped} log record(s) written after the checkpoint")
        D.barrier(env)
        last_dir = checkpoint_dir(run_dir, LAST)
        found = find_checkpoint(last_dir)
        if resume and found is None:
            raise CheckpointError(f"{last_dir}: no checkpoint to resume from")
        if not resume and found is not None:
            raise RunExistsError(
                f"{run_dir} already holds a trained run ({found}); pass --resume to continue it "
                "or choose another run_dir"
            )

        # Dropout differs per rank; data order comes from the sampler, not from these seeds.
        seed_everything(cfg.seed + env.rank, cfg.deterministic)
        model.to(device)
        groups = (
            recipe.param_groups(model)
            if hasattr(recipe, "param_groups")
            else param_groups(model, cfg)
        )
        # Fused AdamW (one kernel per tensor instead of ~10 ops) exists for CUDA and CPU.
        optimizer = build_optimizer(groups, cfg, fused=device.type in ("cuda", "cpu"))
        per_process = cfg.batch_size // env.world_size
        sampler: DistributedSampler[Any] = DistributedSampler(
            train_set,
            num_replicas=env.world_size,
            rank=env.rank,
            shuffle=True,
            seed=cfg.seed,
            drop_last=cfg.drop_last,
        )
        loader_gen = torch.Generator()
        loader = DataLoader(
            train_set,
            batch_size=per_process,
            sampler=sampler,
            collate_fn=collate_fn,
            num_workers=cfg.num_workers,
            pin_memory=device.type == "cuda",
            drop_last=cfg.drop_last,
            worker_init_fn=worker_init_fn,
            generator=loader_gen,
        )
        iters_per_epoch = len(loader)
        if iters_per_epoch == 0:
            raise SidetuneError(
                f"training set too small: {len(sampler)} samples per process, batch {per_process}"
            )
        scheduler = WarmupSchedule(optimizer, cfg, iters_per_epoch)
        scaler = _make_scaler(cfg, device)

        start_epoch, step = 0, 0
        best: float | None = None
        best_epoch: int | None = None
        metrics: dict[str, float] = {}
        if resume:
            assert found is not None
            meta = load_meta(found)
            load_weights(model, found)
            state = load_train_state(found)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            start_epoch, step = int(meta["epoch"]), int(meta["step"])
            best, best_epoch = meta.get("best"), meta.get("best_epoch")
            metrics = meta.get("metrics") or {}
            rng = meta.get("rng") or []
            if len(rng) == env.world_size:
                set_rng_state(rng[env.rank])
            if env.is_main:
                check_best_on_resume(run_dir, found, meta, model)

        if env.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            if config is not None:
                save_config(config, run_dir / "config.yaml")
            logger = RunLogger(
                run_dir, tensorboard=cfg.tensorboard, purge_step=step if resume else None
            )

        train_model: nn.Module = model
        if env.distributed:
            train_model = DistributedDataParallel(
                model,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=cfg.ddp_find_unused_parameters,
            )
        val_loader: DataLoader[Any] | None = None
        if val_set is not None and env.is_main:
            val_loader = DataLoader(
                val_set,
                batch_size=cfg.eval_batch_size or per_process,
                sampler=SequentialSampler(val_set),  # type: ignore[arg-type]
                collate_fn=collate_fn,
                num_workers=cfg.num_workers,
                pin_memory=device.type == "cuda",
            )
        params = [p for g in optimizer.param_groups for p in g["params"]]
        train_means: dict[str, float] = {}
        t_start = time.monotonic()
        epochs_run = start_epoch

        for epoch in range(start_epoch, cfg.epochs):
            sampler.set_epoch(epoch)
            loader_gen.manual_seed(cfg.seed * 100_003 + epoch)
            train_model.train()
            train_means, step = _train_epoch(
                train_model,
                recipe,
                loader,
                optimizer,
                scheduler,
                scaler,
                params,
                cfg,
                env,
                epoch,
                step,
                logger,
                callbacks,
            )
            if logger is not None:
                logger.log(
                    "epoch", step, train_means, epoch=epoch + 1, lr=scheduler.get_last_lr()[0]
                )

            epochs_run = epoch + 1
            # Every rank must agree on stopping: rank 0's clock decides.
            out_of_time = bool(
                D.broadcast_object(
                    env, cfg.max_time_s > 0 and time.monotonic() - t_start >= cfg.max_time_s
                )
            )
            final = epoch + 1 == cfg.epochs or out_of_time
            evaluated = val_loader is not None and ((epoch + 1) % cfg.eval_every == 0 or final)
            improved = False
            if evaluated:
                assert val_loader is not None
                metrics = evaluate_model(
                    model,
                    recipe,
                    val_loader,
                    device,
                    cfg.amp,
                    progress=f"validation {epoch + 1}/{cfg.epochs}" if cfg.progress else None,
                )
                if recipe.best_metric not in metrics:
                    raise SidetuneError(
                        f"best_metric {recipe.best_metric!r} is not among the evaluation metrics: {sorted(metrics)}"
                    )
                value = metrics[recipe.best_metric]
                improved = math.isfinite(value) and (best is None or value > best)
                if improved:
                    best, best_epoch = value, epoch + 1
                if logger is not None:
                    logger.log("val", step, metrics, epoch=epoch + 1)
                    print(
                        f"epoch {epoch + 1}/{cfg.epochs}: {recipe.best_metric}={value:.2f} "
                        f"(best {best:.2f} @ epoch {best_epoch})",
                        flush=True,
                    )

            rngs = D.all_gather_object(env, get_rng_state())
            if env.is_main:
                meta = {
                    "epoch": epoch + 1,
                    "step": step,
                    "epochs": cfg.epochs,
                    "world_size": env.world_size,
                    "metrics": metrics if evaluated else {},
                    "train": train_means,
                    "best_metric": recipe.best_metric,
                    "best": best,
                    "best_epoch": best_epoch,
                    "config": to_dict(config) if config is not None else None,
                    "rng": rngs,
                }
                state = {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else {},
                }
                # best first: `last` must never record a best value that is not on disk.
                if improved:
                    save_checkpoint(checkpoint_dir(run_dir, BEST), model, {**meta, "rng": []})
                    crash_point("epoch:best-saved")
                save_checkpoint(last_dir, model, meta, state)
            D.barrier(env)
            if out_of_time and epoch + 1 < cfg.epochs:
                if env.is_main:
                    print(
                        f"train.max_time_s={cfg.max_time_s:g} reached: stopping after epoch {epoch + 1}",
                        flush=True,
                    )
                break

        summary = {
            "epochs": epochs_run,
            "stopped_early": epochs_run < cfg.epochs,
            "step": step,
            "best_metric": recipe.best_metric,
            "best": best,
            "best_epoch": best_epoch,
            "metrics": metrics,
            "train": train_means,
        }
        return dict(D.broadcast_object(env, summary))
    finally:
        if logger is not None:
            logger.close()
        if lock is not None:
            lock.release()
        D.cleanup(env)


def _train_epoch(
    model: nn.Module,
    recipe: Recipe,
    loader: DataLoader[Any],
    optimizer: torch.optim.Optimizer,
    scheduler: WarmupSchedule,
    scaler: torch.amp.GradScaler | None,
    params: list[torch.Tensor],
    cfg: TrainConfig,
    env: D.DistEnv,
    epoch: int,
    step: int,
    logger: RunLogger | None,
    callbacks: Sequence[Callable[[dict[str, Any]], None]],
) -> tuple[dict[str, float], int]:
    """One epoch; returns (mean of every logged term over the epoch, global step)."""
    device = env.device
    epoch_sums: dict[str, torch.Tensor] = {}
    window_sums: dict[str, torch.Tensor] = {}
    window_n, epoch_n = 0, 0
    grad_norm: torch.Tensor | None = None
    t_window = time.perf_counter()
    bar = tqdm(
        total=len(loader),
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        disable=not (env.is_main and cfg.progress),
        dynamic_ncols=True,
        leave=False,
    )
    try:
        for i, batch in enumerate(loader):
            batch = move_to(batch, device)
            with autocast_context(cfg.amp, device):
                out = recipe.training_step(model, batch)
            loss = out["loss"]
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if cfg.clip_grad_norm > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            step += 1

            # Accumulate on device: no host sync until the next log point.
            for k, v in out.items():
                if isinstance(v, torch.Tensor) and v.numel() == 1:
                    d = v.detach().float().reshape(())
                    window_sums[k] = window_sums[k] + d if k in window_sums else d
            window_n += 1
            bar.update(1)
            for cb in callbacks:
                cb({"epoch": epoch, "step": step, "loss": loss})

            if window_n == cfg.log_every or i + 1 == len(loader):
                keys = sorted(window_sums)
                values = D.all_reduce_mean(
                    env, torch.stack([window_sums[k] for k in keys]) / window_n
                )
                host = values.tolist()
                means = dict(zip(keys, host))
                if not math.isfinite(means.get("loss", 0.0)):
                    raise FloatingPointError(
                        f"loss is {means['loss']} at epoch {epoch + 1}, step {step}"
                    )
                for k in keys:
                    epoch_sums[k] = (
                        epoch_sums.get(k, torch.zeros((), device=device)) + window_sums[k]
                    )
                epoch_n += window_n
                elapsed = time.perf_counter() - t_window
                it_s = window_n / elapsed if elapsed > 0 else float("nan")
                if logger is not None:
                    extra = {"lr": scheduler.get_last_lr()[0], "it_s": it_s}
                    if grad_norm is not None:
                        extra["grad_norm"] = float(grad_norm)
                    logger.log("train", step, {**means, **extra}, epoch=epoch + 1)
                    bar.set_postfix(loss=f"{means.get('loss', float('nan')):.4f}", refresh=False)
                window_sums, window_n = {}, 0
                t_window = time.perf_counter()
    finally:
        bar.close()
    keys = sorted(epoch_sums)
    if not keys:
        return {}, step
    totals = D.all_reduce_mean(env, torch.stack([epoch_sums[k] for k in keys]) / max(1, epoch_n))
    return dict(zip(keys, totals.tolist())), step
