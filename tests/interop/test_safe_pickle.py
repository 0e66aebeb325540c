"""The restricted unpickler: configs come back inert, tensors intact, harmful globals never run."""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import pytest
import torch

from sidetune.backbones import CheckpointError, create_backbone
from sidetune.backbones.internvideo2 import InternVideo2Backbone
from sidetune.interop.safe_pickle import (
    OpaqueObject,
    UnsafePickleError,
    load_checkpoint_tensors,
    safe_load,
)

CALLS: list[str] = []


def harmful(arg: str) -> str:
    """Stands for os.system: if it ever runs, CALLS records it."""
    CALLS.append(arg)
    return arg


class Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (harmful, ("rm -rf ~",))


class EasyDict(dict):  # type: ignore[type-arg]
    """What the official training script pickles as ``config`` (an ``easydict.EasyDict``)."""

    def __init__(self, d: dict[str, object] | None = None) -> None:
        super().__init__()
        for k, v in (d or {}).items():
            setattr(self, k, v)

    def __setattr__(self, k: str, v: object) -> None:
        super().__setattr__(k, v)
        super().__setitem__(k, v)


def _save_training_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> None:
    """``{"model": sd, "config": EasyDict, ...}`` as the official script saves it."""
    module = types.ModuleType("easydict")
    module.EasyDict = EasyDict  # type: ignore[attr-defined]
    EasyDict.__module__ = "easydict"
    sys.modules["easydict"] = module
    try:
        config = EasyDict({"model": {"vision_encoder": {"num_frames": 4}}, "lr": 5e-5})
        torch.save({"model": state, "config": config, "epoch": 9, "payload": Payload()}, path)
    finally:
        del sys.modules["easydict"]
        EasyDict.__module__ = __name__


def test_config_objects_are_inert_and_harmful_globals_never_called(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pth"
    state = {"w": torch.randn(3, 2), "p": torch.nn.Parameter(torch.ones(2))}
    _save_training_checkpoint(path, state)
    with pytest.raises(pickle.UnpicklingError):  # what weights_only=True rightly refuses
        torch.load(path, weights_only=True)

    top = load_checkpoint_tensors(path)
    assert CALLS == []  # the payload's callable was never invoked
    payload = top["payload"]
    assert isinstance(payload, OpaqueObject)
    assert payload.pickled_class == f"{__name__}.harmful" and payload.args == ("rm -rf ~",)
    config = top["config"]
    assert isinstance(config, OpaqueObject) and config.pickled_class == "easydict.EasyDict"
    assert dict(config) == {"model": {"vision_encoder": {"num_frames": 4}}, "lr": 5e-5}
    assert top["epoch"] == 9
    assert torch.equal(top["model"]["w"], state["w"])
    assert isinstance(top["model"]["p"], torch.nn.Parameter)
    with pytest.raises(TypeError, match="opaque stand-in"):
        pickle.dumps(config)


def test_plain_pickle_globals_and_bad_files(tmp_path: Path) -> None:
    blob = tmp_path / "evil.pt"
    blob.write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x05\x00\x00\x00touchq\x01\x85q\x02Rq\x03.")
    with pytest.raises(UnsafePickleError, match=r"evil\.pt"):
        safe_load(blob)  # not a torch archive: refused with the file named, nothing run
    with pytest.raises(UnsafePickleError, match="does not exist"):
        safe_load(tmp_path / "absent.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(UnsafePickleError, match="expected a dict"):
        load_checkpoint_tensors(tmp_path / "list.pt")


def test_backbone_loads_a_checkpoint_that_pickles_its_config(tmp_path: Path) -> None:
    src = create_backbone("internvideo2-tiny")
    assert isinstance(src, InternVideo2Backbone)
    sd = {f"vision_encoder.{k}": v for k, v in src.encoder.state_dict().items()}
    path = tmp_path / "stage2_ckpt.pth"
    _save_training_checkpoint(path, sd)
    loaded = create_backbone("internvideo2-tiny", checkpoint=str(path))
    assert CALLS == []
    clips = torch.randn(1, 4, 3, 28, 28)
    torch.testing.assert_close(
        loaded.forward_intermediates(clips), src.forward_intermediates(clips)
    )
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match=r"junk\.pt: cannot read checkpoint"):
        create_backbone("internvideo2-tiny", checkpoint=str(tmp_path / "junk.pt"))
