"""``train.seed`` fixes SDST's initial weights and its first epoch (issue 13, item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from sidetune.grounding.recipe import build_model, load_grounding_config, run_training
from tests.grounding.test_e2e import make_synthetic, tiny_overrides


def _train_losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r and r.get("kind") == "train"]


def test_two_runs_give_identical_step0_weights_and_first_epoch(tmp_path: Path) -> None:
    data = make_synthetic(tmp_path / "synthetic")
    weights, losses = [], []
    for i, noise in enumerate((0, 999)):
        torch.manual_seed(noise)  # a different RNG state before each run
        torch.rand(17)
        cfg = load_grounding_config(
            "sdst_synthetic",
            [*tiny_overrides(data, tmp_path / f"run{i}", epochs=1), "train.log_every=1"],
        )
        weights.append(build_model(cfg).state_dict())
        run_training(cfg)
        losses.append(_train_losses(tmp_path / f"run{i}"))
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k
    assert losses[0] and losses[0] == losses[1]
