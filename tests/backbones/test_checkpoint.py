"""Checkpoint reading helpers and the layer-choice API shared by every backbone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from sidetune.backbones import BackboneError, parse_layers, resolve_layers
from sidetune.backbones.checkpoint import (
    CheckpointError,
    load_checked,
    read_state_dict,
    select_prefix,
    unwrap,
)


def test_unwrap_and_prefixes() -> None:
    w = torch.ones(2)
    nested = {"model": {"module": {"module.vision_encoder.a": w, "text_encoder.b": w}}, "step": 3}
    state = unwrap(nested)
    assert set(state) == {"module.vision_encoder.a", "text_encoder.b"}
    sub, used = select_prefix(state, ("vision_encoder.",))
    assert used == "vision_encoder." and set(sub) == {"a"}
    whole, used = select_prefix({"a": w}, ("vision_encoder.",))
    assert used == "" and set(whole) == {"a"}
    with pytest.raises(CheckpointError, match="no tensors found"):
        unwrap({"epoch": 1, "args": "x"})


def test_read_state_dict_files_and_directories(tmp_path: Path) -> None:
    save_file({"x": torch.zeros(3)}, str(tmp_path / "model.safetensors"))
    assert set(read_state_dict(tmp_path)) == {"x"}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no single weight file"):
        read_state_dict(empty)
    with pytest.raises(CheckpointError, match=r"nope\.pt: checkpoint file does not exist"):
        read_state_dict(tmp_path / "nope.pt")


def test_load_checked_reports_and_ignores() -> None:
    lin = nn.Linear(2, 2)
    state = {
        "weight": torch.ones(2, 2),
        "bias": torch.zeros(2),
        "head.w": torch.ones(1),
        "extra": torch.ones(1),
    }
    report = load_checked(lin, state, "ck.pt", ignore=("head.*",), strict=False)
    assert report.ignored == ["head.w"] and report.unexpected == ["extra"] and report.loaded == 2
    assert lin.weight.eq(1).all()
    assert "1 unexpected [extra]" in report.summary()
    with pytest.raises(CheckpointError, match=r"ck\.pt: 1 unexpected keys.*extra"):
        load_checked(lin, state, "ck.pt", ignore=("head.*",))


def test_layer_choice() -> None:
    assert resolve_layers(None, 40) == [37, 38, 39, 40]  # the paper's default (1-based)
    assert resolve_layers([-4, -3, -2, -1], 40) == [37, 38, 39, 40]
    assert resolve_layers([10, 20, 30, 40], 40) == [10, 20, 30, 40]
    assert resolve_layers(None, 3) == [1, 2, 3]
    assert resolve_layers([0, -41], 41) == [0, 1]
    with pytest.raises(BackboneError, match="chosen twice"):
        resolve_layers([40, -1], 40)
    with pytest.raises(BackboneError, match="out of range"):
        resolve_layers([-42], 40)
    assert parse_layers("37,38,39,40") == [37, 38, 39, 40]
    assert parse_layers("last3") == [-3, -2, -1] and parse_layers("") is None
    with pytest.raises(BackboneError, match="comma-separated"):
        parse_layers("a,b")
