"""``sidetune.nn.Linear``: nn.Linear's maths on oneDNN for CPU float32, F.linear elsewhere."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sidetune.nn.linear as lin
from sidetune.nn.fast import plain_paths
from sidetune.nn.linear import Linear, linear, onednn_available
from tests.nn.matmul_counter import MatmulCounter

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="PyTorch built without oneDNN")


@pytest.fixture
def any_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """oneDNN for every product size, so tiny test tensors take the path."""
    monkeypatch.setattr(lin, "MIN_MACS", 0)


def _outputs_and_grads(layer: nn.Linear, x: torch.Tensor) -> list[torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    layer.zero_grad()
    out = layer(x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    assert layer.weight.grad is not None and layer.bias.grad is not None and x.grad is not None
    return [out, x.grad, layer.weight.grad.clone(), layer.bias.grad.clone()]


@needs_onednn
@pytest.mark.usefixtures("any_size")
@pytest.mark.parametrize("shape", [(37, 24), (3, 11, 24), (2, 3, 5, 24)])
def test_onednn_linear_equals_f_linear(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    ours = Linear(24, 40)
    ref = nn.Linear(24, 40)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(shape)
    with MatmulCounter() as counter:
        got = _outputs_and_grads(ours, x)
    # forward, input gradient and weight gradient all ran on oneDNN, no BLAS product
    assert counter.ops == ["_linear_pointwise"] * 3
    want = _outputs_and_grads(ref, x)
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.usefixtures("any_size")
def test_non_contiguous_input_and_frozen_weight() -> None:
    torch.manual_seed(0)
    layer = Linear(16, 8)
    layer.weight.requires_grad_(False)
    x = torch.randn(16, 30).t().requires_grad_()  # (30, 16), transposed strides
    out = layer(x)
    out.sum().backward()
    assert x.grad is not None and layer.weight.grad is None and layer.bias.grad is not None
    torch.testing.assert_close(out, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, layer.weight.sum(0).expand(30, 16), rtol=1e-5, atol=1e-5)


def test_switches_select_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    layer, x = Linear(64, 64), torch.randn(-(-lin.MIN_MACS // (64 * 64)), 64)  # just enough
    with plain_paths(), MatmulCounter() as plain:
        layer(x)
    assert plain.ops == ["addmm"]  # the reference path is F.linear
    monkeypatch.setattr(lin, "_BACKEND", "blas")
    with MatmulCounter() as blas:
        layer(x)
    assert blas.ops == ["addmm"]
    monkeypatch.setattr(lin, "_BACKEND", "onednn")
    with MatmulCounter() as default:
        layer(x)
    assert default.ops == (["_linear_pointwise"] if onednn_available() else ["addmm"])
    with MatmulCounter() as small:
        layer(x[:-1])  # one row less: under MIN_MACS multiply-adds, BLAS is faster
    assert small.ops == ["addmm"]


@pytest.mark.usefixtures("any_size")
def test_falls_back_where_onednn_would_differ() -> None:
    layer = Linear(8, 4)
    with MatmulCounter() as counter:
        out64 = layer.double()(torch.randn(3, 8, dtype=torch.float64))
        empty = layer.float()(torch.randn(0, 8))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf16 = layer(torch.randn(3, 8))
    assert "_linear_pointwise" not in counter.ops
    assert out64.dtype == torch.float64 and empty.shape == (0, 4)
    assert out_bf16.dtype == torch.bfloat16  # autocast's cast, as with nn.Linear


def test_state_dict_and_init_match_nn_linear() -> None:
    torch.manual_seed(0)
    ours = Linear(6, 3)
    torch.manual_seed(0)
    ref = nn.Linear(6, 3)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for a, b in zip(ours.state_dict().values(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    torch.testing.assert_close(
        linear(torch.ones(2, 6), ref.weight), torch.ones(2, 6) @ ref.weight.t()
    )


def test_bad_backend_name_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDETUNE_CPU_LINEAR", "mkl")
    with pytest.raises(ValueError, match="SIDETUNE_CPU_LINEAR"):
        lin._backend_from_env()
    monkeypatch.setenv("SIDETUNE_CPU_LINEAR", " BLAS ")
    assert lin._backend_from_env() == "blas"


@needs_onednn
@pytest.mark.usefixtures("any_size")
def test_weight_gradient_with_strided_input_and_double_backward() -> None:
    torch.manual_seed(0)
    w = torch.randn(8, 16, requires_grad=True)
    b = torch.randn(8, requires_grad=True)
    x = torch.randn(16, 30).t().requires_grad_()  # (30, 16), transposed strides
    results = []
    for fn in (linear, F.linear):
        out = fn(x, w, b)
        gx, gw = torch.autograd.grad(out.square().sum(), (x, w), create_graph=True)
        # second order: the backward itself is differentiable
        ggx, ggw = torch.autograd.grad(gx.square().sum() + gw.sum(), (x, w))
        results.append([out, gx, gw, ggx, ggw])
    for a, ref in zip(*results, strict=True):
        torch.testing.assert_close(a, ref, rtol=1e-4, atol=1e-4)


@needs_onednn
@pytest.mark.usefixtures("any_size")
def test_frozen_weight_keeps_no_input_for_backward() -> None:
    w = torch.randn(8, 16)  # frozen: backward needs the weight, not the input
    x = torch.randn(30, 16, requires_grad=True)
    h = x * 1.0
    out = linear(h, w)
    h.mul_(2.0)  # F.linear allows this too: h is not needed for the input gradient
    out.sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, w.sum(0).expand(30, 16), rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("any_size")
def test_tracing_and_function_transforms_use_f_linear() -> None:
    layer = Linear(6, 3)
    traced = torch.fx.symbolic_trace(layer)
    x = torch.randn(4, 6)
    torch.testing.assert_close(traced(x), F.linear(x, layer.weight, layer.bias))
    grad = torch.func.grad(lambda w: linear(x, w).sum())(layer.weight.detach())
    torch.testing.assert_close(grad, x.sum(0).expand(3, 6))
