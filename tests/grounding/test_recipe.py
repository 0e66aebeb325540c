"""The grounding recipe: config presets and overrides, clear errors, exact resume, 2-process DDP."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from sidetune.cli import main
from sidetune.config import ConfigError
from sidetune.engine import load_meta
from sidetune.grounding.config import GroundingConfig
from sidetune.grounding.recipe import build_model, load_grounding_config, run_training
from tests.grounding.test_e2e import make_synthetic, tiny_overrides


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synthetic"))


@pytest.mark.parametrize(
    ("name", "epochs", "queries", "clip", "lr", "step", "text_dim", "best"),
    [
        ("sdst_qvhighlights", 60, 30, 2.0, 1e-4, 20, 1024, "MR-full-mAP"),
        ("sdst_qvhighlights_llama", 60, 30, 2.0, 1e-4, 20, 4096, "MR-full-mAP"),
        ("sdst_charades", 50, 30, 1.0, 2.5e-4, 30, 4096, "R1@0.7"),
        ("sdst_tacos", 150, 5, 2.0, 1e-4, 20, 4096, "R1@0.7"),
    ],
)
def test_presets_follow_table_a(
    name: str,
    epochs: int,
    queries: int,
    clip: float,
    lr: float,
    step: int,
    text_dim: int,
    best: str,
) -> None:
    cfg = load_grounding_config(name)
    assert cfg.task == "grounding"
    assert (cfg.train.epochs, cfg.model.num_queries, cfg.data.resolved_clip_length) == (
        epochs,
        queries,
        clip,
    )
    assert (cfg.train.lr, cfg.train.lr_milestones, cfg.train.batch_size) == (lr, [step], 32)
    assert cfg.train.step_epochs is None
    assert (cfg.train.weight_decay, cfg.train.warmup_iters, cfg.train.warmup_ratio) == (
        1e-4,
        2000,
        0.001,
    )
    assert (cfg.train.clip_grad_norm, cfg.model.hidden_dim, cfg.model.num_levels) == (35.0, 256, 4)
    assert (cfg.model.video_dim, cfg.model.text_dim, cfg.data.min_video_len) == (768, text_dim, 5.0)
    assert cfg.resolved_best_metric == best


def test_default_best_metric_per_dataset() -> None:
    assert GroundingConfig().resolved_best_metric == "MR-full-mAP"
    cfg = load_grounding_config(None, ["data.dataset=tacos"])
    assert cfg.resolved_best_metric == "R1@0.7"
    assert (
        load_grounding_config(None, ["data.dataset=tacos", "best_metric=mIoU"]).resolved_best_metric
        == "mIoU"
    )


def test_overrides_reach_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load_grounding_config(
        "sdst_synthetic", ["model.video_dim=20", "model.hidden_dim=48", "train.lr=0.0003"]
    )
    assert (cfg.model.video_dim, cfg.model.hidden_dim, cfg.train.lr) == (20, 48, 3e-4)
    model = build_model(cfg)
    first = next(
        p for n, p in model.named_parameters() if n.startswith("video_proj") and p.ndim == 2
    )
    assert tuple(first.shape) == (48, 20)
    assert main(["info", "sdst_synthetic"]) == 0
    base = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["info", "sdst_synthetic", "model.hidden_dim=48"]) == 0
    wider = capsys.readouterr().out.strip().splitlines()[-1]
    assert base.startswith("trainable parameters:") and wider.startswith("trainable parameters:")
    assert base != wider


def test_bad_override_key_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"model\.hiden_dim"):
        load_grounding_config("sdst_synthetic", ["model.hiden_dim=3"])
    assert main(["train", "sdst_synthetic", "model.hiden_dim=3"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown config key(s) model.hiden_dim") and "\n" not in err
    assert main(["train", "sdst_synthetic", "train.epochs=zero"]) == 1
    assert "train.epochs" in capsys.readouterr().err


def test_feature_dims_must_match_the_model(synthetic: Path, tmp_path: Path) -> None:
    overrides = [*tiny_overrides(synthetic, tmp_path / "run"), "model.video_dim=32"]
    with pytest.raises(ConfigError, match=r"model.video_dim=32 .* set model.video_dim=16"):
        run_training(load_grounding_config("sdst_synthetic", overrides))
    overrides = [*tiny_overrides(synthetic, tmp_path / "run"), "model.num_levels=4"]
    with pytest.raises(ConfigError, match="num_levels"):
        run_training(load_grounding_config("sdst_synthetic", overrides))


class Crash(RuntimeError):
    pass


def test_resume_equals_uninterrupted(
    synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref_cfg = load_grounding_config(
        "sdst_synthetic", tiny_overrides(synthetic, tmp_path / "ref", epochs=3)
    )
    ref = run_training(ref_cfg)
    steps_per_epoch = ref["step"] // 3

    def crash(state: dict[str, Any]) -> None:
        if state["step"] == steps_per_epoch + 1:  # just after epoch 1's checkpoint
            raise Crash("simulated kill")

    run = tmp_path / "crashed"
    overrides = tiny_overrides(synthetic, run, epochs=3)
    with pytest.raises(Crash):
        run_training(load_grounding_config("sdst_synthetic", overrides), callbacks=[crash])
    assert load_meta(run / "checkpoints" / "last")["epoch"] == 1
    torch.manual_seed(1234)  # a new process would not share the old RNG state
    # the CLI path, as a user would resume
    assert main(["train", "sdst_synthetic", *overrides, "--resume"]) == 0
    assert "trained 3 epochs" in capsys.readouterr().out
    from safetensors.torch import load_file

    a = load_file(tmp_path / "ref" / "checkpoints" / "last" / "model.safetensors")
    b = load_file(run / "checkpoints" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # NaN-aware equality (a bucket without GT windows scores NaN)
    got = load_meta(run / "checkpoints" / "last")["metrics"]
    assert json.dumps(got, sort_keys=True) == json.dumps(ref["metrics"], sort_keys=True)
    # a second plain `train` into the same run_dir refuses to clobber it
    assert main(["train", "sdst_synthetic", *overrides]) == 1
    assert "--resume" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp_worker(rank: int, world: int, port: int, overrides: list[str]) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    run_training(load_grounding_config("sdst_synthetic", overrides))


@pytest.mark.slow  # ~10-40 s: two fresh interpreters; the engine's own DDP test is in the default tier
def test_two_process_ddp(synthetic: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    overrides = tiny_overrides(synthetic, run, epochs=1)
    mp.spawn(_ddp_worker, args=(2, _free_port(), overrides), nprocs=2, join=True)
    meta = load_meta(run / "checkpoints" / "last")
    assert meta["world_size"] == 2 and meta["epoch"] == 1 and "MR-full-mAP" in meta["metrics"]
    assert (run / "checkpoints" / "best" / "model.safetensors").is_file()
