"""``model.lean_saving``: the same gradients and BN statistics, fewer bytes kept for backward."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from sidetune.recognition import lean_saving as ls
from sidetune.recognition.config import TDSModelConfig
from sidetune.recognition.model import build_tds_clip

CFG = dict(backbone="tiny", num_classes=6, side_dim=64, side_heads=2, td_reduction=8)


def _models(attention: bool = False, mlp: bool = True) -> tuple[Any, Any]:
    torch.manual_seed(0)
    cfg = TDSModelConfig(**CFG, lean_saving=True, lean_attention=attention, lean_mlp=mlp)  # type: ignore[arg-type]
    lean = build_tds_clip(cfg)
    plain = copy.deepcopy(lean)
    plain.lean_saving = False
    return lean.train(), plain.train()


@pytest.mark.usefixtures("onednn_everywhere")
@pytest.mark.parametrize(("attention", "mlp"), [(False, True), (True, True), (False, False)])
def test_same_gradients_and_statistics(attention: bool, mlp: bool) -> None:
    lean, plain = _models(attention, mlp)
    for block in plain.blocks:
        block.attention.recompute = False
    frames = torch.randn(2, 4, 5, 3, 32, 32)
    for m in (lean, plain):
        m(frames).logsumexp(-1).sum().backward()
    for (name, a), (_, b) in zip(lean.named_parameters(), plain.named_parameters()):
        if a.requires_grad:
            assert a.grad is not None and b.grad is not None, name
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=name)
    # rebuilding a BatchNorm output in backward does not touch its running statistics
    for (name, a), (_, b) in zip(lean.named_buffers(), plain.named_buffers()):
        assert torch.equal(a, b), name


def _saved_bytes(model: Any, frames: torch.Tensor) -> int:
    storages: dict[int, int] = {}
    slots: list[Any] = []
    if model.lean_saving:
        orig = ls.LeanSaving._pack

        def pack(self: ls.LeanSaving, t: torch.Tensor) -> Any:
            slot = orig(self, t)
            slots.append(slot)
            return slot

        ls.LeanSaving._pack = pack  # type: ignore[method-assign]
        try:
            out = model(frames)
        finally:
            ls.LeanSaving._pack = orig  # type: ignore[method-assign]
        kept = [s.tensor for s in slots if isinstance(s, ls._Saved) and s.tensor is not None]
    else:
        kept = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
            out = model(frames)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    for t in kept:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            storages[ptr] = t.untyped_storage().nbytes()
    del out
    return sum(storages.values())


def test_keeps_fewer_bytes_for_backward() -> None:
    lean, plain = _models(attention=True)
    frames = torch.randn(2, 4, 5, 3, 32, 32)
    a, b = _saved_bytes(lean, frames), _saved_bytes(plain, frames)
    assert a < 0.65 * b, (a, b)  # tiny CLIP: the SME stem input weighs more than at B/16


def test_rebuild_is_a_no_op_without_grad() -> None:
    with ls.lean_saving():
        y = torch.ones(3)
        assert ls.rebuild(y, torch.zeros, 3) is y
    assert ls.rebuild(y, torch.zeros, 3) is y


def test_rebuilds_outputs_saved_by_their_own_op() -> None:
    calls = []

    def recompute(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return torch.sigmoid(x)

    x = torch.randn(5, requires_grad=True)
    with ls.lean_saving():
        y = ls.rebuild(torch.sigmoid(x), recompute, x)  # sigmoid saved y before the call
        (y * 3.0).sum().backward()
    s = torch.sigmoid(x.detach())
    torch.testing.assert_close(x.grad, 3.0 * s * (1 - s))
    assert calls == [1]
    # a view of a bigger storage is never registered (a rebuilt tensor could not stand in)
    big = torch.randn(10, requires_grad=True) * 1.0
    with ls.lean_saving() as ctx:
        ls.rebuild(big[:5], recompute, x)
        assert not ctx._recipes


def test_recompute_switches_trade_bytes_for_matmuls() -> None:
    frames = torch.randn(2, 4, 5, 3, 32, 32)
    saved = {}
    for attention, mlp in [(True, True), (False, True), (False, False)]:
        lean, _ = _models(attention, mlp)
        saved[attention, mlp] = _saved_bytes(lean, frames)
    # each recomputation drops a hidden layer from what backward keeps
    assert saved[True, True] < saved[False, True] < saved[False, False], saved
