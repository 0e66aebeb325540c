"""The authors' training recipe: augmentation pipeline, K400 sampling, repeated augmentation,
warm-up + cosine schedule, and the configs (values read from their YAML files)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from sidetune.engine.config import TrainConfig
from sidetune.engine.optim import lr_factor
from sidetune.recognition.data import collate_videos, official_train_indices
from sidetune.recognition.official_transforms import (
    OfficialTrainTransform,
    official_sized_crop_params,
)
from sidetune.recognition.recipe import build_train_set, load_recognition_config, train
from sidetune.recognition.synthetic import generate


def test_k400_train_indices_stay_in_their_ranges() -> None:
    # F = 81, T = 8: s = 10, segment i draws from [10 i, 10 (i + 1)] inclusive
    draws = np.stack(
        [official_train_indices(81, 8, "k400", np.random.default_rng(s)) for s in range(300)]
    )
    assert (draws >= np.arange(8) * 10).all() and (draws <= np.arange(1, 9) * 10).all()
    assert set(draws[:, 0].tolist()) == set(range(11))  # both ends reachable
    # ssv2 keeps TSN: segment i in [i F / T, (i + 1) F / T)
    ssv2 = official_train_indices(80, 8, "ssv2", np.random.default_rng(0))
    assert ((ssv2 // 10) == np.arange(8)).all()


def test_sized_crop_swaps_sides_and_falls_back() -> None:
    shapes = {official_sized_crop_params(256, 320, random.Random(s)) is None for s in range(50)}
    assert shapes == {False}
    ratios = [
        b[2] / b[3]
        for s in range(400)
        if (b := official_sized_crop_params(256, 320, random.Random(s)))
    ]
    # aspect U(3/4, 4/3) then a 50 % swap of width and height: both orientations occur
    assert min(ratios) < 0.8 and max(ratios) > 1.25
    assert official_sized_crop_params(4, 400, random.Random(0)) is None  # no fit in 10 tries


def test_official_transform_flip_swap_and_grayscale() -> None:
    frames = torch.randint(0, 256, (6, 40, 60, 3), dtype=torch.uint8)
    tf = OfficialTrainTransform(16, (24, 32), None, {86: 87, 87: 86}, True, 1.0)
    labels = set()
    for s in range(20):
        tf.rng = random.Random(s)
        x, label = tf(frames, 86)
        assert x.shape == (6, 3, 16, 16)
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])  # grayscale p = 1
        labels.add(label)
    assert labels == {86, 87}  # the flip swaps the left/right class


def test_repeated_augmentation_collate() -> None:
    a = {"frames": torch.zeros(2, 4, 3, 3, 8, 8), "label": [1, 1], "index": 0}
    b = {"frames": torch.ones(2, 4, 3, 3, 8, 8), "label": [2, 2], "index": 1}
    batch = collate_videos([a, b])
    assert batch["frames"].shape == (4, 4, 3, 3, 8, 8)
    assert batch["label"].tolist() == [1, 1, 2, 2] and batch["index"].tolist() == [0, 0, 1, 1]


def test_warmup_cosine_schedule_hand_values() -> None:
    cfg = TrainConfig(epochs=30, schedule="warmup_cosine", warmup_epochs=4)
    ipe = 100
    assert lr_factor(0, cfg, ipe) == 0.0  # warm-up from 0
    assert lr_factor(200, cfg, ipe) == pytest.approx(0.5)  # epoch 2 of 4
    assert lr_factor(400, cfg, ipe) == pytest.approx(1.0)
    # cosine over the remaining 26 epochs: halfway (epoch 17) -> 0.5
    assert lr_factor(1700, cfg, ipe) == pytest.approx(0.5)
    assert lr_factor(1000, cfg, ipe) == pytest.approx(0.5 * (1 + math.cos(math.pi * 6 / 26)))
    assert lr_factor(3000, cfg, ipe) == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("name", "epochs", "lr", "pipeline", "ra", "gray", "swap", "side"),
    [
        ("tds_clip_b16_ssv2", 30, 1e-3, "ssv2", True, 0.0, "pairs", 320),
        ("tds_clip_l14_ssv2", 30, 1e-4, "ssv2", True, 0.0, "pairs", 512),
        ("tds_clip_b16_ssv1", 40, 1e-3, "ssv2", True, 0.0, "pairs", 320),
        ("tds_clip_b16_k400", 30, 1e-3, "k400", False, 0.2, "none", 320),
    ],
)
def test_configs_follow_the_authors_yaml(
    name: str, epochs: int, lr: float, pipeline: str, ra: bool, gray: float, swap: str, side: int
) -> None:
    cfg = load_recognition_config(name)
    d, t = cfg.data, cfg.train
    assert (t.epochs, t.lr, t.weight_decay, t.schedule, t.warmup_epochs) == (
        epochs,
        lr,
        0.15,
        "warmup_cosine",
        4,
    )
    assert (t.batch_size, d.num_sample, t.seed, cfg.eval.label_smoothing) == (128, 2, 1024, 0.1)
    assert (d.pipeline, d.rand_augment, d.grayscale_prob, d.flip_swap) == (pipeline, ra, gray, swap)
    assert d.rand_augment_policy == "rand-m7-n4-mstd0.5-inc1" and cfg.model.side_dim == side
    assert (cfg.eval.protocol, cfg.eval.amp, d.num_segments, cfg.model.num_local_frames) == (
        pipeline,
        "none",
        8,
        5,
    )


def test_train_with_the_official_pipeline(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate(data, train_per_class=1, val_per_class=1, frames=12, size=32, seed=0)
    overrides = [f"data.root={data}", f"run_dir={tmp_path / 'run'}", "train.epochs=1",
                 "train.batch_size=3", "model.side_dim=32", "data.num_segments=4",
                 "model.num_local_frames=3", "data.pipeline=ssv2", "data.scale=[36, 40]",
                 "data.rand_augment=true", "data.num_sample=2", "eval.protocol=ssv2",
                 "eval.scale=[36, 40]", "train.schedule=warmup_cosine", "train.warmup_epochs=0.5"]  # fmt: skip
    cfg = load_recognition_config("tds_clip_synthetic", overrides)
    ds = build_train_set(cfg, None if not cfg.data.labels else ["a"] * 6)
    item = ds[0]
    assert item["frames"].shape == (2, 4, 3, 3, 32, 32) and len(item["label"]) == 2
    assert train("tds_clip_synthetic", overrides) == 0
