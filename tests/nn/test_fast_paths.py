"""Every fast path of ``sidetune.nn`` gives the plain path's outputs and gradients."""

from __future__ import annotations

import pytest
import torch

from sidetune.nn import AttentionBlock, DropPath, FeedForwardBlock, MultiHeadAttention
from sidetune.nn.attention import residual
from sidetune.nn.deformable_1d import deformable_aggregate_1d, interpolation_matrix, sample_1d
from sidetune.nn.fast import fast_paths, plain_paths
from tests.nn.matmul_counter import MatmulCounter


def _both(fn, inputs):  # type: ignore[no-untyped-def]
    """(outputs, grads) of ``fn`` on the plain and on the fast path."""
    results = []
    for plain in (True, False):
        xs = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
        with plain_paths(plain):
            assert fast_paths() is not plain
            out = fn(*xs)
            grads = torch.autograd.grad(
                (out * torch.linspace(-1, 1, out.shape[-1])).sum(),
                [x for x in xs if x.requires_grad],
            )
        results.append((out, grads))
    return results


def test_plain_paths_restores_the_switch() -> None:
    assert fast_paths()
    with plain_paths():
        assert not fast_paths()
        with plain_paths(False):
            assert not fast_paths()  # an inner "leave as is" does not switch back on
    assert fast_paths()


@pytest.mark.parametrize("kind", ["self_pos", "self", "cross"])
def test_fused_projections_equal_plain(kind: str) -> None:
    torch.manual_seed(0)
    block = AttentionBlock(16, 4)
    x, mem = torch.randn(3, 7, 16), torch.randn(3, 5, 16)
    pos = torch.randn(1, 7, 16)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False], [True] * 3 + [False] * 2])

    def run(x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        if kind == "self_pos":
            return block(x, query_pos=other)
        if kind == "self":
            return block(x + 0 * other.sum(), key_mask=torch.ones(3, 7, dtype=torch.bool))
        return block(x, other, mask)

    other = mem if kind == "cross" else pos
    (plain, g_plain), (fast, g_fast) = _both(run, [x, other])
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_fast, g_plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # parameter gradients too (the fused path back-propagates through a concatenation)
    grads = []
    for plain_path in (True, False):
        block.zero_grad()
        with plain_paths(plain_path):
            run(x, other).square().sum().backward()
        grads.append([p.grad.clone() for p in block.parameters() if p.grad is not None])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_fused_projection_counts_one_matmul() -> None:
    attn = MultiHeadAttention(8, 2)
    x = torch.randn(2, 3, 8)
    with MatmulCounter() as fast:
        attn(x, x, x)
    with plain_paths(), MatmulCounter() as plain:
        attn(x, x, x)
    # q|k|v in one product, plus the output projection; the plain path runs four
    assert (fast.count, plain.count) == (2, 4)


def test_residual_drop_path_equals_plain_add() -> None:
    dp = DropPath(0.5).train()
    x, branch = torch.randn(64, 3, 4), torch.randn(64, 3, 4)
    torch.manual_seed(3)
    fast = residual(x, branch, dp)
    torch.manual_seed(3)
    plain = x + dp(branch)
    torch.testing.assert_close(fast, plain)
    assert (fast == x).all(dim=(1, 2)).any()  # some samples dropped the branch
    dp.eval()
    torch.testing.assert_close(residual(x, branch, dp), x + branch)


def test_ffn_block_same_random_draws() -> None:
    ffn = FeedForwardBlock(8, 2, drop_path=0.3).train()
    x = torch.randn(16, 5, 8)
    outs = []
    for plain in (True, False):
        torch.manual_seed(1)
        with plain_paths(plain):
            outs.append(ffn(x))
    torch.testing.assert_close(outs[0], outs[1])


@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_sample_1d_scatter_equals_tent(padding: str) -> None:
    torch.manual_seed(0)
    b, t, c, n = 3, 9, 5, 11
    mask = torch.arange(t)[None] < torch.tensor([9, 6, 1])[:, None]
    x = torch.randn(b, t, c)
    u = torch.rand(b, n) * 1.6 - 0.3  # inside and outside the valid timeline
    u[0, :3] = torch.tensor([0.0, 1.0, 0.52])  # the two ends: clamped (border) or blended
    (plain, g_plain), (fast, g_fast) = _both(
        lambda x, u: sample_1d(x, u, mask, padding),  # type: ignore[arg-type]
        [x, u],
    )
    torch.testing.assert_close(fast, plain)
    for a, b_ in zip(g_fast, g_plain, strict=True):
        torch.testing.assert_close(a, b_)


def test_deformable_aggregate_scatter_equals_tent() -> None:
    torch.manual_seed(0)
    b, h, t, dh, m, p = 3, 4, 9, 2, 5, 3
    mask = torch.arange(t)[None] < torch.tensor([9, 6, 2])[:, None]
    value = torch.randn(b, h, t, dh)
    loc = torch.rand(b, m, h, p) * 1.4 - 0.2
    weights = torch.rand(b, m, h, p).softmax(-1)
    (plain, g_plain), (fast, g_fast) = _both(
        lambda v, loc, w: deformable_aggregate_1d(v, loc, w, mask), [value, loc, weights]
    )
    torch.testing.assert_close(fast, plain)
    for a, b_ in zip(g_fast, g_plain, strict=True):
        torch.testing.assert_close(a, b_)


def test_interpolation_matrix_rows() -> None:
    mask = torch.tensor([[True, True, True, False]])
    index = torch.tensor([[[0.25], [1.0], [2.0], [-0.5], [2.5]]])  # (1, 5, 1)
    zeros = interpolation_matrix(index, mask, "zeros")[0]
    expected = torch.tensor(
        [
            [0.75, 0.25, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.5, 0.0, 0.0, 0.0],  # half of it reads the zero before clip 0
            [0.0, 0.0, 0.5, 0.0],  # never the padded clip 3
        ]
    )
    torch.testing.assert_close(zeros, expected)
    border = interpolation_matrix(index, mask, "border")[0]
    assert torch.allclose(border.sum(-1), torch.ones(5))
    assert border[:, 3].abs().sum() == 0


def test_gradient_at_a_clip_centre_is_one_sided() -> None:
    """At an exact clip index interpolation has a kink. The tent kernel's autograd sums both
    one-sided slopes there (``x[i+1] - x[i-1]``); the fast path takes the right-hand slope
    ``x[i+1] - x[i]``, a true derivative of the interpolant. Away from integers both agree."""
    x = torch.tensor([[[0.0], [1.0], [5.0], [6.0]]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    u = torch.tensor([[(1.0 + 0.5) / 4]], requires_grad=True)  # index exactly 1
    (g_fast,) = torch.autograd.grad(sample_1d(x, u, mask).sum(), u)
    assert g_fast.item() == pytest.approx((5.0 - 1.0) * 4)
