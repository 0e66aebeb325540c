"""Two trainings into one run directory: the second stops with an error naming the first."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from sidetune.engine import fit
from sidetune.engine.lock import RunLock, RunLockedError
from tests.engine.test_trainer import ToyRecipe, ToySet, collate, toy_cfg, toy_model


def test_second_training_into_a_locked_run_dir_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with RunLock(run):  # stands for a training in progress (flock is per open file)
        with pytest.raises(RunLockedError) as err:
            fit(toy_model(), ToyRecipe(), ToySet(8), None, collate, toy_cfg(epochs=1), run)
        msg = str(err.value)
        assert f"pid {os.getpid()}" in msg and socket.gethostname() in msg and str(run) in msg
        assert not (run / "checkpoints").exists()  # nothing was written
    # released: the same training now runs, and releases the lock when done
    fit(toy_model(), ToyRecipe(), ToySet(8), None, collate, toy_cfg(epochs=1), run)
    with RunLock(run):
        pass


def test_second_lock_names_the_holder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with RunLock(run):
        lock = RunLock(run)
        with pytest.raises(RunLockedError, match="in use by another training"):
            lock.acquire()


def test_lock_of_a_dead_process_does_not_block(tmp_path: Path) -> None:
    """The kernel drops a flock when its holder dies; the stale file is harmless."""
    run = tmp_path / "run"
    pid = os.fork()
    if pid == 0:  # child: take the lock and die without releasing it
        RunLock(run).acquire()
        os._exit(0)
    os.waitpid(pid, 0)
    assert (run / ".lock").is_file()
    with RunLock(run):
        pass
