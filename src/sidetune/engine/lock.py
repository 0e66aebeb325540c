"""An exclusive lock on a run directory, so two trainings never write into the same one.

``fcntl.flock`` on ``run_dir/.lock``: the kernel drops the lock when the holder exits, however
it dies (``kill -9`` included), so a stale lock file never blocks a later run. The file holds
the holder's pid, host and start time, which the error message of a second process quotes.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Any

from sidetune.errors import SidetuneError

LOCK_FILE = ".lock"


class RunLockedError(SidetuneError):
    """Another process holds the run directory's lock; the message names it."""


class RunLock:
    """``with RunLock(run_dir): ...`` holds the lock for the block (creates ``run_dir``)."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fh: IO[str] | None = None

    def acquire(self) -> RunLock:
        import fcntl

        self.run_dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = _describe(fh.read())
            fh.close()
            raise RunLockedError(
                f"{self.run_dir} is in use by another training ({holder}); wait for it to "
                "finish, stop it, or choose another run_dir"
            ) from None
        fh.seek(0)
        fh.truncate()
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        fh.write(json.dumps(info) + "\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            import fcntl

            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started"])))
        return f"pid {info['pid']} on host {info['host']}, started {started}"
    except (ValueError, KeyError, TypeError):
        return f"lock file {LOCK_FILE} held by an unknown process"
