"""``sidetune.nn.Dropout``: nn.Dropout's distribution from a uniform draw, bool mask saved."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from sidetune.nn.dropout import Dropout, dropout


def test_keeps_one_minus_p_and_rescales() -> None:
    torch.manual_seed(0)
    x = torch.ones(200_000)
    out = Dropout(0.3).train()(x)
    kept = out != 0
    # 200k Bernoulli(0.7) draws: the kept fraction is within 5 standard deviations of 0.7
    assert abs(kept.float().mean().item() - 0.7) < 5 * (0.7 * 0.3 / 200_000) ** 0.5
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / 0.7))
    assert abs(out.mean().item() - 1.0) < 0.01  # expectation unchanged


def test_identity_in_eval_or_p0_and_zeros_at_p1() -> None:
    x = torch.randn(5, 7)
    assert Dropout(0.5).eval()(x) is x
    assert dropout(x, 0.0, True) is x
    xg = x.clone().requires_grad_()
    zeros = dropout(xg, 1.0, True)
    assert torch.equal(zeros, torch.zeros_like(x))
    zeros.sum().backward()  # still in the graph, as with nn.Dropout
    assert xg.grad is not None and torch.equal(xg.grad, torch.zeros_like(x))
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)


def test_gradient_is_the_mask_and_only_a_bool_mask_is_saved() -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = dropout(x, 0.25, True)
    out.sum().backward()
    assert x.grad is not None
    expected = (out != 0).float() / 0.75
    torch.testing.assert_close(x.grad, expected)
    assert [t.dtype for t in saved] == [torch.bool]  # 1 byte per element, like nn.Dropout


def test_uniforms_are_float32_on_the_cpu_and_accelerators_keep_f_dropout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[torch.dtype] = []
    rand = torch.rand

    def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(kwargs["dtype"])
        return rand(*args, **kwargs)

    monkeypatch.setattr(torch, "rand", spy)
    out = dropout(torch.ones(1000, dtype=torch.bfloat16), 0.5, True)
    assert out.dtype == torch.bfloat16 and calls == [torch.float32]
    meta = dropout(torch.ones(1000, device="meta"), 0.5, True)  # not the CPU: F.dropout
    assert meta.device.type == "meta" and calls == [torch.float32]
