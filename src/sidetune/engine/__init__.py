"""The training engine shared by the grounding and recognition recipes.

:func:`fit` runs AdamW with warm-up + step/cosine schedule, gradient clipping, optional AMP,
per-epoch and best checkpoints (safetensors + JSON sidecar), exact resume, DDP under
``torchrun``, a tqdm bar, TensorBoard and a JSONL log. A task supplies a :class:`Recipe`.
"""

from sidetune.engine.checkpoint import (
    CheckpointError,
    find_checkpoint,
    load_meta,
    load_train_state,
    load_weights,
    save_checkpoint,
    unwrap,
)
from sidetune.engine.config import TrainConfig
from sidetune.engine.distributed import DistEnv, init_distributed, resolve_device
from sidetune.engine.optim import WarmupSchedule, build_optimizer, lr_factor, param_groups
from sidetune.engine.run_state import BEST, LAST, checkpoint_dir, stale_best
from sidetune.engine.seed import get_rng_state, seed_everything, set_rng_state
from sidetune.engine.trainer import (
    DeviceLoader,
    Recipe,
    RunExistsError,
    autocast_context,
    evaluate_model,
    fit,
    move_to,
)

__all__ = [
    "BEST",
    "LAST",
    "CheckpointError",
    "DeviceLoader",
    "DistEnv",
    "Recipe",
    "RunExistsError",
    "TrainConfig",
    "WarmupSchedule",
    "autocast_context",
    "build_optimizer",
    "checkpoint_dir",
    "evaluate_model",
    "find_checkpoint",
    "fit",
    "get_rng_state",
    "init_distributed",
    "load_meta",
    "load_train_state",
    "load_weights",
    "lr_factor",
    "move_to",
    "param_groups",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
    "stale_best",
    "unwrap",
]
