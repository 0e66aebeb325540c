"""Two CPU processes with gloo through the same ``fit``: DDP keeps replicas equal, rank 0 writes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from sidetune.engine import fit, load_meta, load_weights
from tests.engine.test_trainer import ToyRecipe, ToySet, collate, toy_cfg, toy_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, run: str) -> None:
    # What torchrun would export for each process.
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    model = toy_model()
    summary = fit(
        model,
        ToyRecipe(),
        ToySet(24),
        ToySet(8, seed=1),
        collate,
        toy_cfg(epochs=2),
        run,
        config=None,
    )
    torch.save(
        {"state": model.state_dict(), "step": summary["step"], "best": summary["best"]},
        Path(run).parent / f"rank{rank}.pt",
    )


def test_two_process_ddp_gloo(tmp_path: Path) -> None:
    run = tmp_path / "run"
    mp.spawn(_worker, args=(2, _free_port(), str(run)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # Global batch 4 = 2 per process over 24 samples: 6 iterations per epoch on each rank.
    assert r0["step"] == r1["step"] == 12
    assert r0["best"] == r1["best"] is not None  # rank 0's summary is broadcast
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k  # gradients were all-reduced
    meta = load_meta(run / "checkpoints" / "last")
    assert meta["epoch"] == 2 and meta["world_size"] == 2 and len(meta["rng"]) == 2
    model = toy_model()
    load_weights(model, run / "checkpoints" / "last")
    for k, v in model.state_dict().items():
        assert torch.equal(v, r0["state"][k]), k
    assert not list(tmp_path.glob("run/**/*.tmp"))
