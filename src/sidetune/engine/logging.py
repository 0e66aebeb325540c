"""Run logs: one JSON object per line in ``run_dir/log.jsonl`` plus TensorBoard scalars."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from sidetune.utils.io import atomic_open

LOG_FILE = "log.jsonl"


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf
    return v


class RunLogger:
    """Appends records to ``log.jsonl`` (flushed per record) and mirrors scalars to TensorBoard.

    Only rank 0 creates one. ``purge_step`` (on resume) drops TensorBoard events that a killed
    run wrote after its last checkpoint.
    """

    def __init__(
        self, run_dir: Path, tensorboard: bool = True, purge_step: int | None = None
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.run_dir / LOG_FILE, "a", encoding="utf-8")  # noqa: SIM115
        self._tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional at run time
                self._tb = None
            else:
                self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)

    def log(self, kind: str, step: int, values: dict[str, Any], **extra: Any) -> None:
        """One record: ``{"kind", "step", "time", **extra, **values}``; scalars to ``kind/<key>``."""
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **extra}
        record.update({k: _clean(v) for k, v in values.items()})
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()


def truncate_log(path: str | Path, step: int, epoch: int) -> int:
    """Drop the records a killed run wrote after its checkpoint; returns how many were dropped.

    On resume the run replays everything after ``(epoch, step)`` of the checkpoint, so records
    with a later step or epoch would appear twice. A torn last line (a kill mid-write) goes too.
    The file is rewritten atomically.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    kept: list[str] = []
    dropped = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            later = int(record.get("step", 0)) > step or int(record.get("epoch", 0)) > epoch
        except (ValueError, TypeError, AttributeError):
            later = True
        if later:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        with atomic_open(path, "w", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in kept))
    return dropped
