"""What a run directory holds between processes: the ``last`` / ``best`` checkpoint pair.

After a crash (``kill -9`` at any instant), :func:`prepare_run_dir` moves the newest complete
copy of each checkpoint back in place and trims the log; :func:`check_best_on_resume` makes
``best`` hold the epoch ``last`` records as best; :func:`stale_best` lets readers of ``best``
warn instead of silently scoring another epoch's weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from sidetune.engine.checkpoint import (
    find_checkpoint,
    load_meta,
    recover_checkpoint,
    save_checkpoint,
)
from sidetune.engine.logging import LOG_FILE, truncate_log

LAST = "last"
BEST = "best"


def checkpoint_dir(run_dir: str | Path, which: str = LAST) -> Path:
    return Path(run_dir) / "checkpoints" / which


def prepare_run_dir(run_dir: Path, resume: bool) -> int:
    """Main process, under the lock: repair checkpoints after a crash, trim the log.

    Returns the number of log records dropped.
    """
    last = recover_checkpoint(checkpoint_dir(run_dir, LAST))
    recover_checkpoint(checkpoint_dir(run_dir, BEST))
    for stale in run_dir.glob(".*.tmp"):  # half-written config.yaml / metrics of a killed run
        if stale.is_file():
            stale.unlink(missing_ok=True)
    if not resume or last is None:
        return 0
    meta = load_meta(last)
    return truncate_log(run_dir / LOG_FILE, int(meta["step"]), int(meta["epoch"]))


def stale_best(run_dir: str | Path) -> str | None:
    """A warning when ``best/`` does not hold the epoch ``last/`` records as best, else None.

    Runs of this version never get there (``best`` is written first); a run written by an
    older version and killed while writing ``best`` did. Readers of ``best`` (``predict``,
    ``evaluate --run``, the Python API) print this instead of scoring the wrong model silently.
    """
    last = find_checkpoint(checkpoint_dir(run_dir, LAST))
    best = find_checkpoint(checkpoint_dir(run_dir, BEST))
    if last is None or best is None:
        return None
    recorded = load_meta(last).get("best_epoch")
    held = load_meta(best).get("epoch")
    if recorded is None or held is None or int(held) >= int(recorded):
        return None
    return (
        f"WARNING: {best} holds epoch {held} but {last} records the best at epoch {recorded} "
        "(a crash while best was written); `sidetune train CONFIG --resume` repairs it when "
        "last holds that epoch; until then, this is not the best model"
    )


def check_best_on_resume(run_dir: Path, last: Path, meta: dict[str, Any], model: nn.Module) -> None:
    """``best`` must hold the epoch ``last`` records as best; repair it from ``last`` if it can.

    ``model`` holds ``last``'s weights. Runs written by this version never need the repair
    (``best`` is written first); a ``best`` newer than ``last`` is fine: the replayed epoch
    rewrites it.
    """
    best_epoch = meta.get("best_epoch")
    if best_epoch is None:
        return
    best_dir = checkpoint_dir(run_dir, BEST)
    found = find_checkpoint(best_dir)
    held = int(load_meta(found).get("epoch") or 0) if found is not None else None
    if held is not None and held >= int(best_epoch):
        return
    if int(best_epoch) == int(meta["epoch"]):
        save_checkpoint(best_dir, model, {**meta, "rng": []})
        print(
            f"repaired {best_dir}: it held epoch {held}, {last} records the best at epoch "
            f"{best_epoch}; copied from {last}",
            flush=True,
        )
        return
    print(
        f"WARNING: {best_dir} holds epoch {held} but {last} records the best "
        f"{meta.get('best_metric')} at epoch {best_epoch}, whose weights are gone; "
        "best will be replaced at the next improvement",
        flush=True,
    )
