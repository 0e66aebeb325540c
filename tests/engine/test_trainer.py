"""The engine on a toy regression recipe: logs, checkpoints, best, exact resume."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from sidetune.engine import (
    CheckpointError,
    RunExistsError,
    TrainConfig,
    fit,
    load_meta,
    load_train_state,
    load_weights,
    seed_everything,
)


class ToySet(torch.utils.data.Dataset):
    """y = x @ w + noise; items are dicts like the real datasets."""

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 6, generator=g)
        self.y = self.x @ torch.linspace(-1, 1, 6) + 0.05 * torch.randn(n, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def toy_model() -> nn.Module:
    seed_everything(0)
    # Dropout makes the result depend on the torch RNG, which resume must restore.
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))


class ToyRecipe:
    best_metric = "neg_mse"

    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        err = model(batch["x"]).squeeze(-1) - batch["y"]
        mse = err.pow(2).mean()
        return {"loss": mse, "loss_abs": err.abs().mean()}

    def evaluate(self, model: nn.Module, loader: Iterable[Any]) -> dict[str, float]:
        assert not model.training and not torch.is_grad_enabled()
        se, n = 0.0, 0
        for batch in loader:
            se += (model(batch["x"]).squeeze(-1) - batch["y"]).pow(2).sum().item()
            n += len(batch["y"])
        return {"neg_mse": -se / n, "n": float(n)}


def toy_cfg(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = dict(
        epochs=3,
        batch_size=4,
        lr=1e-2,
        warmup_iters=5,
        step_epochs=2,
        log_every=2,
        progress=False,
        tensorboard=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_fit_trains_logs_and_checkpoints(tmp_path: Path) -> None:
    model = toy_model()
    run = tmp_path / "run"
    cfg = toy_cfg(epochs=4, tensorboard=True)
    summary = fit(model, ToyRecipe(), ToySet(24), ToySet(8, seed=1), collate, cfg, run, config=cfg)
    assert summary["step"] == 4 * 6 and summary["epochs"] == 4
    assert summary["best_metric"] == "neg_mse" and summary["best"] == max(
        summary["best"], summary["metrics"]["neg_mse"]
    )
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds.count("val") == 4 and kinds.count("epoch") == 4 and kinds.count("train") == 4 * 3
    train = [r for r in records if r["kind"] == "train"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    vals = [r for r in records if r["kind"] == "val"]
    assert epochs[-1]["loss"] < epochs[0]["loss"] and vals[-1]["neg_mse"] > vals[0]["neg_mse"]
    assert {"lr", "it_s", "grad_norm", "loss_abs"} <= set(train[0])
    assert (run / "config.yaml").read_text().startswith("epochs: 4")
    assert list((run / "tb").iterdir())
    last, best = run / "checkpoints" / "last", run / "checkpoints" / "best"
    meta = load_meta(last)
    assert meta["epoch"] == 4 and meta["step"] == 24 and meta["config"]["epochs"] == 4
    assert load_meta(best)["epoch"] == summary["best_epoch"]
    assert "optimizer" in load_train_state(last)
    fresh = toy_model()
    load_weights(fresh, last)
    for a, b in zip(fresh.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_refuses_to_clobber_and_to_resume_nothing(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        fit(
            toy_model(),
            ToyRecipe(),
            ToySet(8),
            None,
            collate,
            toy_cfg(epochs=1),
            tmp_path,
            resume=True,
        )
    fit(toy_model(), ToyRecipe(), ToySet(8), None, collate, toy_cfg(epochs=1), tmp_path)
    assert not (tmp_path / "checkpoints" / "best").exists()  # no validation set, no best
    with pytest.raises(RunExistsError, match="--resume"):
        fit(toy_model(), ToyRecipe(), ToySet(8), None, collate, toy_cfg(epochs=1), tmp_path)


def test_missing_best_metric_is_clear(tmp_path: Path) -> None:
    recipe = ToyRecipe()
    recipe.best_metric = "MR-full-mAP"
    with pytest.raises(Exception, match="MR-full-mAP"):
        fit(toy_model(), recipe, ToySet(8), ToySet(4), collate, toy_cfg(epochs=1), tmp_path)


class Crash(RuntimeError):
    pass


def test_resume_after_crash_equals_uninterrupted_run(tmp_path: Path) -> None:
    cfg = toy_cfg(epochs=3)
    ref = toy_model()
    ref_summary = fit(
        ref, ToyRecipe(), ToySet(24), ToySet(8, seed=1), collate, cfg, tmp_path / "ref"
    )

    def crash_mid_epoch_2(state: dict[str, Any]) -> None:
        if state["step"] == 9:  # 6 iterations per epoch: inside epoch 2, after epoch 1's checkpoint
            raise Crash("simulated kill")

    run = tmp_path / "crashed"
    with pytest.raises(Crash):
        fit(
            toy_model(),
            ToyRecipe(),
            ToySet(24),
            ToySet(8, seed=1),
            collate,
            cfg,
            run,
            callbacks=[crash_mid_epoch_2],
        )
    assert load_meta(run / "checkpoints" / "last")["epoch"] == 1
    # A fresh process would rebuild the model from the config and reseed: simulate that.
    seed_everything(999)
    resumed = toy_model()
    summary = fit(
        resumed, ToyRecipe(), ToySet(24), ToySet(8, seed=1), collate, cfg, run, resume=True
    )
    assert summary["step"] == ref_summary["step"] == 18
    for (k, a), b in zip(ref.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert summary["metrics"] == ref_summary["metrics"]
    assert summary["best"] == ref_summary["best"]


def test_time_guard_stops_after_an_epoch_with_eval_and_checkpoint(tmp_path: Path) -> None:
    cfg = toy_cfg(epochs=5, eval_every=3, max_time_s=1e-6)
    summary = fit(toy_model(), ToyRecipe(), ToySet(24), ToySet(8, seed=1), collate, cfg, tmp_path)
    assert summary["epochs"] == 1 and summary["stopped_early"] and summary["step"] == 6
    assert "neg_mse" in summary["metrics"]  # the stopping epoch is evaluated
    assert load_meta(tmp_path / "checkpoints" / "last")["epoch"] == 1


def test_validation_shows_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = toy_cfg(epochs=1, progress=True)
    fit(toy_model(), ToyRecipe(), ToySet(8), ToySet(8, seed=1), collate, cfg, tmp_path)
    err = capsys.readouterr().err
    assert "validation 1/1" in err and "epoch 1/1" in err
    cfg = toy_cfg(epochs=1, progress=False)
    fit(toy_model(), ToyRecipe(), ToySet(8), ToySet(8, seed=1), collate, cfg, tmp_path / "quiet")
    assert "validation" not in capsys.readouterr().err
