import math

import pytest
from torch import nn

from sidetune.config import ConfigError, from_dict
from sidetune.engine import TrainConfig, WarmupSchedule, build_optimizer, lr_factor, param_groups


def test_table_a_defaults() -> None:
    cfg = TrainConfig()
    assert (cfg.lr, cfg.weight_decay, cfg.warmup_iters, cfg.warmup_ratio) == (
        1e-4,
        1e-4,
        2000,
        0.001,
    )
    assert (cfg.schedule, cfg.step_epochs, cfg.step_gamma, cfg.clip_grad_norm, cfg.batch_size) == (
        "step",
        20,
        0.1,
        35.0,
        32,
    )


def test_warmup_then_step_decay() -> None:
    cfg = TrainConfig(epochs=60, warmup_iters=100, warmup_ratio=0.001, step_epochs=20)
    ipe = 10
    assert lr_factor(0, cfg, ipe) == pytest.approx(0.001)
    assert lr_factor(50, cfg, ipe) == pytest.approx(0.001 + 0.5 * 0.999)
    assert lr_factor(100, cfg, ipe) == 1.0
    assert lr_factor(199, cfg, ipe) == 1.0
    assert lr_factor(200, cfg, ipe) == pytest.approx(0.1)  # epoch 20
    assert lr_factor(400, cfg, ipe) == pytest.approx(0.01)


def test_cosine_schedule() -> None:
    cfg = TrainConfig(epochs=10, warmup_iters=0, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, cfg, 5) == pytest.approx(1.0)
    assert lr_factor(25, cfg, 5) == pytest.approx(0.55)
    assert lr_factor(50, cfg, 5) == pytest.approx(0.1)
    mid = lr_factor(10, cfg, 5)
    assert mid == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.2)))


def test_schedule_sets_lr_and_resumes() -> None:
    model = nn.Linear(3, 2)
    cfg = TrainConfig(lr=1e-2, warmup_iters=4, warmup_ratio=0.5, step_epochs=1, epochs=3)
    opt = build_optimizer(param_groups(model, cfg), cfg)
    sched = WarmupSchedule(opt, cfg, iters_per_epoch=4)
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-3)
    for _ in range(6):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)  # epoch 1, decayed once
    opt2 = build_optimizer(param_groups(model, cfg), cfg)
    sched2 = WarmupSchedule(opt2, cfg, iters_per_epoch=4)
    sched2.load_state_dict(sched.state_dict())
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_param_groups_skip_frozen_and_split_decay() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 1))
    model[2].requires_grad_(False)
    groups = param_groups(model, TrainConfig(decay_norm_and_bias=True))
    assert len(groups) == 1 and len(groups[0]["params"]) == 4
    groups = param_groups(model, TrainConfig(decay_norm_and_bias=False, weight_decay=0.5))
    assert [len(g["params"]) for g in groups] == [1, 3]
    assert [g["weight_decay"] for g in groups] == [0.5, 0.0]
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        param_groups(frozen, TrainConfig())


def test_bad_train_config_names_field() -> None:
    with pytest.raises(ConfigError, match="epochs"):
        from_dict(TrainConfig, {"epochs": 0})
    with pytest.raises(ConfigError, match="schedule"):
        from_dict(TrainConfig, {"schedule": "linear"})
    assert from_dict(TrainConfig, {"lr": 1}).lr == 1.0


def test_milestones_decay_once_per_listed_epoch() -> None:
    cfg = TrainConfig(epochs=150, warmup_iters=0, step_epochs=None, lr_milestones=[20, 90])
    ipe = 7
    factors = [lr_factor(e * ipe + ipe - 1, cfg, ipe) for e in range(150)]
    assert factors[:20] == [1.0] * 20
    assert factors[20:90] == pytest.approx([0.1] * 70)
    assert factors[90:] == pytest.approx([0.01] * 60)
    periodic = TrainConfig(epochs=150, warmup_iters=0, step_epochs=20)
    assert lr_factor(149 * ipe, periodic, ipe) == pytest.approx(1e-7)  # what TACoS used to get


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr_milestones": [20]}, "both"),  # step_epochs keeps its default of 20
        ({"lr_milestones": [], "step_epochs": None}, "strictly increasing"),
        ({"lr_milestones": [30, 20], "step_epochs": None}, "strictly increasing"),
        ({"lr_milestones": [0], "step_epochs": None}, "strictly increasing"),
        ({"step_epochs": None}, "needs train.step_epochs"),
    ],
)
def test_schedule_forms_are_validated(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        from_dict(TrainConfig, kwargs)
