"""Run logs: one JSON object per line in ``run_dir/log.jsonl`` plus TensorBoard scalars."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any


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
        self._fh = open(self.run_dir / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115
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
