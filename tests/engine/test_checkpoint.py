from pathlib import Path

import pytest
import torch
from torch import nn

from sidetune.engine import (
    CheckpointError,
    find_checkpoint,
    load_meta,
    load_train_state,
    load_weights,
    save_checkpoint,
)


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight  # shared tensor: safetensors must cope
        self.register_buffer("t", torch.arange(6.0).reshape(2, 3).t())  # non-contiguous


def test_round_trip_with_shared_and_noncontiguous(tmp_path: Path) -> None:
    m = Tied()
    opt = torch.optim.AdamW(m.parameters(), lr=0.1)
    m.a(torch.ones(1, 4)).sum().backward()
    opt.step()
    d = save_checkpoint(
        tmp_path / "ck" / "last", m, {"epoch": 3, "x": [1, 2]}, {"optimizer": opt.state_dict()}
    )
    assert sorted(p.name for p in d.iterdir()) == [
        "complete.json",
        "meta.json",
        "model.safetensors",
        "train_state.pt",
    ]
    m2 = Tied()
    load_weights(m2, d)
    for (k, v), (_, v2) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(v, v2), k
    assert m2.b.weight is m2.a.weight
    assert load_meta(d) == {"epoch": 3, "x": [1, 2]}
    opt2 = torch.optim.AdamW(m2.parameters(), lr=0.1)
    opt2.load_state_dict(load_train_state(d)["optimizer"])
    assert torch.equal(
        opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )


def test_overwrite_is_swap_and_old_is_fallback(tmp_path: Path) -> None:
    m = nn.Linear(2, 2)
    d = tmp_path / "last"
    save_checkpoint(d, m, {"epoch": 1})
    save_checkpoint(d, m, {"epoch": 2})
    assert load_meta(d)["epoch"] == 2
    assert not (tmp_path / "last.old").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # crash between the two renames: only last.old exists
    d.rename(tmp_path / "last.old")
    assert find_checkpoint(d) == tmp_path / "last.old"
    assert find_checkpoint(tmp_path / "nothing") is None


def test_failed_save_leaves_previous(tmp_path: Path) -> None:
    m = nn.Linear(2, 2)
    d = tmp_path / "last"
    save_checkpoint(d, m, {"epoch": 1})
    with pytest.raises(TypeError):
        save_checkpoint(d, m, {"epoch": object()})  # not JSON-serialisable
    assert load_meta(d)["epoch"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


class SideTuned(nn.Module):
    """A frozen 'backbone' plus a trainable side layer with a BatchNorm buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(8, 8)
        self.backbone.requires_grad_(False)
        self.side = nn.Sequential(nn.Linear(8, 2), nn.BatchNorm1d(2))


def test_frozen_parameters_are_not_saved(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    m = SideTuned()
    m.side[1].running_mean.fill_(0.5)
    d = save_checkpoint(tmp_path / "c", m, {})
    stored = load_file(str(d / "model.safetensors"))
    assert not any(k.startswith("backbone.") for k in stored)
    assert {"side.0.weight", "side.1.running_mean", "side.1.num_batches_tracked"} <= set(stored)

    m2 = SideTuned()
    m2.backbone.load_state_dict(m.backbone.state_dict())  # the backbone's own checkpoint
    load_weights(m2, d)
    for (k, v), (_, v2) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(v, v2), k

    # a trainable tensor missing from the file is an error that names it
    m3 = SideTuned()
    m3.backbone.requires_grad_(True)
    with pytest.raises(CheckpointError, match=r"missing backbone\.bias, backbone\.weight"):
        load_weights(m3, d)


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"meta\.json"):
        load_meta(tmp_path)
    (tmp_path / "meta.json").write_text("{bad")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        load_meta(tmp_path)
    with pytest.raises(CheckpointError, match=r"train_state\.pt"):
        load_train_state(tmp_path)
    save_checkpoint(tmp_path / "c", nn.Linear(2, 2), {})
    with pytest.raises(CheckpointError, match="do not fit"):
        load_weights(nn.Linear(3, 2), tmp_path / "c")


def test_train_state_refuses_pickled_objects(tmp_path: Path) -> None:
    torch.save({"x": Path("/etc")}, tmp_path / "train_state.pt")  # arbitrary class: not allowed
    with pytest.raises(CheckpointError, match="cannot load"):
        load_train_state(tmp_path)
