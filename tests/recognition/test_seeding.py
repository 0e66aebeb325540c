"""``train.seed`` fixes the side network's initial weights and the first epoch (issue 13, item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sidetune.recognition.recipe import build_model, load_recognition_config, train
from sidetune.recognition.synthetic import generate

TINY = ["model.side_dim=32", "data.num_segments=4", "model.num_local_frames=3"]


def _losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r and r.get("kind") == "train"]


def test_build_model_is_seeded_by_train_seed() -> None:
    cfg = load_recognition_config("tds_clip_synthetic", TINY)
    torch.manual_seed(123)
    a = build_model(cfg).state_dict()
    torch.rand(1000)  # whatever was drawn before must not matter
    b = build_model(cfg).state_dict()
    c = build_model(load_recognition_config("tds_clip_synthetic", [*TINY, "train.seed=1"]))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    differ = [
        k for k, v in c.state_dict().items() if v.is_floating_point() and not torch.equal(v, a[k])
    ]
    assert any(k.startswith("blocks.") for k in differ)  # another seed, other side weights
    assert not any(k.startswith("clip.") for k in differ)  # the frozen CLIP has its own seed


def test_two_runs_give_identical_first_epoch_losses(tmp_path: Path) -> None:
    data = tmp_path / "synth"
    generate(data, train_per_class=2, val_per_class=1, frames=12, size=32, seed=0)
    runs = []
    for i, noise in enumerate((0, 999)):
        torch.manual_seed(noise)  # a different RNG state before each run
        run = tmp_path / f"run{i}"
        overrides = [f"data.root={data}", f"run_dir={run}", "train.epochs=1",
                     "train.batch_size=4", "train.log_every=1", *TINY]  # fmt: skip
        assert train("tds_clip_synthetic", overrides) == 0
        runs.append(_losses(run))
    assert len(runs[0]) == 3 and runs[0] == runs[1]


@pytest.mark.parametrize("seed", [0, 1])
def test_seed_is_recorded_in_config(seed: int) -> None:
    assert load_recognition_config("tds_clip_synthetic", [f"train.seed={seed}"]).train.seed == seed
