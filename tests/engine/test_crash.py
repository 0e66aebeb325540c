"""Kill a tiny run at named instants, twice in a row, and check resume is bit-identical.

The crash is injected deterministically at each step of a checkpoint swap (and mid-epoch and
between writing ``best`` and ``last``) through ``checkpoint.crash_hook``; the raised exception
derives from BaseException so, like ``kill -9``, it skips the savers' cleanup. One test also
kills a real subprocess with ``SIDETUNE_CRASH_AT`` (``os._exit``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from sidetune.engine import checkpoint as ck
from sidetune.engine import fit, load_meta, seed_everything
from tests.engine.test_trainer import ToyRecipe, ToySet, collate, toy_cfg, toy_model

EPOCHS = 4
STEPS_PER_EPOCH = 6  # ToySet(24), batch 4
SWAP_STEPS = ("written", "marked", "moved-old", "moved-new")
POINTS = (
    "mid-epoch",
    "epoch:best-saved",
    *(f"{which}:{step}" for which in ("best", "last") for step in SWAP_STEPS),
)


class Kill(BaseException):
    """Stands for kill -9: not an Exception, so no `except Exception` cleanup runs."""


@pytest.fixture(autouse=True)
def _no_hook() -> Iterator[None]:
    yield
    ck.crash_hook = None


def _train(run: Path, resume: bool, crash: str | None = None, nth: int = 1) -> dict[str, Any]:
    """One process's life: build the model as a fresh process would, train, maybe die at `crash`."""
    seen = {"n": 0}

    def hook(name: str) -> None:
        if name == crash:
            seen["n"] += 1
            if seen["n"] == nth:
                raise Kill(name)

    def mid_epoch(state: dict[str, Any]) -> None:
        # the 3rd step of an epoch, nth time this process gets there
        if crash == "mid-epoch" and state["step"] % STEPS_PER_EPOCH == 3:
            hook("mid-epoch")

    ck.crash_hook = hook
    seed_everything(1234)  # a new process starts from an unrelated RNG state
    try:
        return fit(
            toy_model(),
            ToyRecipe(),
            ToySet(24),
            ToySet(8, seed=1),
            collate,
            toy_cfg(epochs=EPOCHS),
            run,
            resume=resume,
            callbacks=[mid_epoch],
        )
    finally:
        ck.crash_hook = None


def _snapshot(run: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for which in ("last", "best"):
        d = run / "checkpoints" / which
        out[which] = load_file(str(d / ck.WEIGHTS))
        out[which + "_meta"] = load_meta(d)
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    out["log"] = [{k: v for k, v in r.items() if k not in ("time", "it_s")} for r in records]
    out["leftovers"] = sorted(
        p.name for p in (run / "checkpoints").iterdir() if p.name not in ("last", "best")
    )
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run = tmp_path_factory.mktemp("ref")
    summary = _train(run, resume=False)
    assert summary["epochs"] == EPOCHS
    # every epoch must improve, so that each `best` crash point is reached twice or more
    vals = [r for r in _snapshot(run)["log"] if r["kind"] == "val"]
    assert len(vals) == EPOCHS
    return _snapshot(run)


def _assert_same(got: dict[str, Any], ref: dict[str, Any]) -> None:
    for which in ("last", "best"):
        assert got[which].keys() == ref[which].keys()
        for k in ref[which]:
            assert torch.equal(got[which][k], ref[which][k]), (which, k)
        assert got[which + "_meta"] == ref[which + "_meta"], which
    assert got["log"] == ref["log"]
    assert got["leftovers"] == []


@pytest.mark.parametrize("point", POINTS)
def test_two_crashes_in_a_row_then_resume_is_bit_identical(
    point: str, reference: dict[str, Any], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    # the first life dies the 2nd time it reaches `point` (epoch 2 or 3), the second life the
    # 1st time (often the very same save, replayed), the third life finishes
    with pytest.raises(Kill):
        _train(run, resume=False, crash=point, nth=2)
    with pytest.raises(Kill):
        _train(run, resume=True, crash=point, nth=1)
    (run / ".config.yaml.x1y2.tmp").write_text("half a file")  # as left by a kill mid-write
    summary = _train(run, resume=True)
    assert not list(run.glob(".*.tmp"))
    assert summary["epochs"] == EPOCHS and summary["step"] == EPOCHS * STEPS_PER_EPOCH
    _assert_same(_snapshot(run), reference)


def test_checkpoint_survives_two_crashes_inside_the_swap(tmp_path: Path) -> None:
    """The reported failure: two kills between the renames used to leave only hidden temporaries."""
    model = torch.nn.Linear(2, 2)
    d = tmp_path / "last"
    ck.save_checkpoint(d, model, {"epoch": 1, "step": 1})

    def kill_at(point: str) -> Any:
        def hook(name: str) -> None:
            if name == point:
                raise Kill(name)

        return hook

    # 1st kill: after last -> last.old (epoch 2 sits complete in a temporary); 2nd kill: the
    # next save (epoch 3), once its files are complete, where the old code had already
    # deleted last.old. Both times no complete checkpoint is under the published name.
    for epoch, point in ((2, "last:moved-old"), (3, "last:marked")):
        ck.crash_hook = kill_at(point)
        with pytest.raises(Kill):
            ck.save_checkpoint(d, model, {"epoch": epoch, "step": epoch})
        ck.crash_hook = None
        assert not d.exists() and (tmp_path / "last.old").is_dir()
    found = ck.find_checkpoint(d)
    assert found is not None and load_meta(found)["epoch"] == 3
    assert ck.recover_checkpoint(d) == d
    assert load_meta(d)["epoch"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_unmarked_temporary_is_never_used_and_is_cleaned(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    d = tmp_path / "last"
    ck.save_checkpoint(d, model, {"epoch": 1, "step": 1})
    ck.crash_hook = lambda name: (
        (_ for _ in ()).throw(Kill(name)) if name == "last:written" else None
    )
    with pytest.raises(Kill):
        ck.save_checkpoint(d, model, {"epoch": 2, "step": 2})
    ck.crash_hook = None
    assert len(list(tmp_path.glob(".last.*.tmp"))) == 1  # complete files, but no marker
    assert ck.find_checkpoint(d) == d and load_meta(d)["epoch"] == 1
    ck.recover_checkpoint(d)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_corrupt_published_checkpoint_falls_back_to_a_verified_one(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    d = tmp_path / "last"
    ck.save_checkpoint(d, model, {"epoch": 1, "step": 1})
    (d / ck.WEIGHTS).write_bytes(b"x" * (d / ck.WEIGHTS).stat().st_size)  # same size, bad bytes
    assert ck.is_complete(d) and not ck.is_complete(d, verify=True)
    assert ck.find_checkpoint(d, verify=True) is None


def test_stale_best_is_repaired_on_resume(tmp_path: Path) -> None:
    """A run of the old writer order: `last` recorded a new best whose `best/` write was killed."""
    run = tmp_path / "run"
    _train_epochs(run, 2)
    best, last = run / "checkpoints" / "best", run / "checkpoints" / "last"
    meta = load_meta(last)
    assert meta["best_epoch"] == 2 and load_meta(best)["epoch"] == 2
    # make `best` stale: put epoch 1's weights back, as a kill during the old best write did
    stale = load_meta(best)
    ck.save_checkpoint(best, torch.nn.Linear(1, 1), {**stale, "epoch": 1})
    seed_everything(5)
    fit(
        toy_model(),
        ToyRecipe(),
        ToySet(24),
        ToySet(8, seed=1),
        collate,
        toy_cfg(epochs=2),
        run,
        resume=True,
    )
    assert load_meta(best)["epoch"] == 2
    ref, got = load_file(str(last / ck.WEIGHTS)), load_file(str(best / ck.WEIGHTS))
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def _train_epochs(run: Path, epochs: int) -> None:
    seed_everything(1234)
    fit(
        toy_model(),
        ToyRecipe(),
        ToySet(24),
        ToySet(8, seed=1),
        collate,
        toy_cfg(epochs=epochs),
        run,
    )


def test_resume_does_not_duplicate_log_records(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(Kill):
        _train(run, resume=False, crash="mid-epoch", nth=2)
    _train(run, resume=True)
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    keys = [(r["kind"], r["step"]) for r in records]
    assert len(keys) == len(set(keys))
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == list(range(1, EPOCHS + 1))


@pytest.mark.slow  # three fresh Python processes importing torch: ~30 s on the loaded 2-core CPU
def test_real_kill_in_the_swap_twice_then_resume(tmp_path: Path) -> None:
    """os._exit (no cleanup at all) inside `last`'s swap, in a real subprocess, twice."""
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
            from tests.engine.test_crash import _train
            from pathlib import Path
            _train(Path(sys.argv[1]), resume=sys.argv[2] == "1")
            """
        )
    )
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    lives = [("0", "last:moved-old@2"), ("1", "last:moved-new@1"), ("1", "")]
    codes = []
    for resume, spec in lives:
        env[ck.CRASH_ENV] = spec
        proc = subprocess.run(
            [sys.executable, str(script), str(run), resume], env=env, capture_output=True, text=True
        )
        codes.append(proc.returncode)
        if spec == "":
            assert proc.returncode == 0, proc.stderr
    assert codes == [137, 137, 0]
    ref = tmp_path / "ref"
    _train(ref, resume=False)
    _assert_same(_snapshot(run), _snapshot(ref))
