"""1D linear sampling and deformable aggregation (Eq. 9): exactness, padding, slow-loop parity."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sidetune.nn.deformable_1d import (
    deformable_aggregate_1d,
    interpolation_weights,
    sample_1d,
    to_index,
)


def _ramp(t: int, offset: float = 0.0) -> torch.Tensor:
    return (torch.arange(t, dtype=torch.float32) + offset).view(1, t, 1)


def test_sample_ramp_is_exact() -> None:
    x = _ramp(8)  # value == clip index
    mask = torch.ones(1, 8, dtype=torch.bool)
    # clip i has its centre at (i + 0.5) / 8, so u = (2.3 + 0.5) / 8 reads index 2.3
    u = torch.tensor([[(2.3 + 0.5) / 8, 0.5 / 8, 7.5 / 8, 4.0 / 8]])
    out = sample_1d(x, u, mask, padding="border")
    assert torch.allclose(out[0, :, 0], torch.tensor([2.3, 0.0, 7.0, 3.5]), atol=1e-6)


def test_sample_border_clamps_and_zeros_blend() -> None:
    x = _ramp(4, offset=1.0)  # values 1, 2, 3, 4
    mask = torch.ones(1, 4, dtype=torch.bool)
    u = torch.tensor([[0.0, 1.0, -0.5]])  # indices -0.5, 3.5, -2.5
    border = sample_1d(x, u, mask, padding="border")[0, :, 0]
    assert torch.allclose(border, torch.tensor([1.0, 4.0, 1.0]))
    zeros = sample_1d(x, u, mask, padding="zeros")[0, :, 0]
    assert torch.allclose(zeros, torch.tensor([0.5, 2.0, 0.0]))


def test_positions_are_relative_to_each_valid_length() -> None:
    x = torch.cat([_ramp(6), _ramp(6)], dim=0)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    u = torch.full((2, 1), 0.5)
    out = sample_1d(x, u, mask)[:, 0, 0]
    assert torch.allclose(out, torch.tensor([2.5, 1.0]))  # middle of 6 clips vs of 3 clips


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_padding_never_read(padding: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 5, 3)
    mask = torch.ones(1, 5, dtype=torch.bool)
    u = torch.rand(1, 7) * 1.4 - 0.2
    alone = sample_1d(x, u, mask, padding)  # type: ignore[arg-type]
    padded_x = torch.cat([x, torch.full((1, 4, 3), 1e6)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(1, 4, dtype=torch.bool)], dim=1)
    padded = sample_1d(padded_x, u, padded_mask, padding)  # type: ignore[arg-type]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_zeros_padding_matches_grid_sample() -> None:
    torch.manual_seed(0)
    b, t, c, n = 2, 9, 4, 11
    x = torch.randn(b, t, c)
    mask = torch.ones(b, t, dtype=torch.bool)
    u = torch.rand(b, n) * 1.6 - 0.3
    ours = sample_1d(x, u, mask, padding="zeros")
    grid = torch.stack([u * 2 - 1, torch.zeros_like(u)], dim=-1).view(b, 1, n, 2)
    ref = F.grid_sample(
        x.transpose(1, 2).unsqueeze(2),
        grid,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    assert torch.allclose(ours, ref[:, :, 0].transpose(1, 2), atol=1e-5)


def _slow_aggregate(value, locations, weights, lengths):  # type: ignore[no-untyped-def]
    """Reference loop implementation of Eq. 9 with zero padding outside each valid length."""
    b, h, _, dh = value.shape
    m, p = locations.shape[1], locations.shape[3]
    out = torch.zeros(b, m, h, dh, dtype=value.dtype)
    for bi in range(b):
        length = int(lengths[bi])
        for mi in range(m):
            for hi in range(h):
                for pi in range(p):
                    x = float(locations[bi, mi, hi, pi]) * length - 0.5
                    i0 = math.floor(x)
                    frac = x - i0
                    acc = torch.zeros(dh, dtype=value.dtype)
                    for idx, wgt in ((i0, 1.0 - frac), (i0 + 1, frac)):
                        if 0 <= idx < length:
                            acc = acc + wgt * value[bi, hi, idx]
                    out[bi, mi, hi] += weights[bi, mi, hi, pi] * acc
    return out.reshape(b, m, h * dh)


def test_deformable_aggregate_matches_slow_loop() -> None:
    torch.manual_seed(0)
    b, h, t, dh, m, p = 3, 2, 7, 4, 5, 3
    value = torch.randn(b, h, t, dh, dtype=torch.float64)
    locations = torch.rand(b, m, h, p, dtype=torch.float64) * 1.6 - 0.3
    weights = torch.rand(b, m, h, p, dtype=torch.float64).softmax(-1)
    lengths = torch.tensor([7, 4, 1])
    mask = torch.arange(t)[None] < lengths[:, None]
    fast = deformable_aggregate_1d(value, locations, weights, mask)
    slow = _slow_aggregate(value, locations, weights, lengths)
    assert torch.allclose(fast, slow, atol=1e-10)


def test_deformable_aggregate_gradients() -> None:
    torch.manual_seed(0)
    b, h, t, dh, m, p = 2, 2, 6, 3, 3, 2
    value = torch.randn(b, h, t, dh, dtype=torch.float64, requires_grad=True)
    # keep away from integer indices, where linear interpolation is not differentiable
    idx = (
        torch.randint(0, t - 1, (b, m, h, p)).double()
        + 0.25
        + 0.5 * torch.rand(b, m, h, p, dtype=torch.float64)
    )
    locations = ((idx + 0.5) / t).requires_grad_(True)
    weights = torch.rand(b, m, h, p, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(b, t, dtype=torch.bool)
    assert torch.autograd.gradcheck(
        lambda v, loc, w: deformable_aggregate_1d(v, loc, w, mask), (value, locations, weights)
    )


def test_interpolation_weights_rows_sum_to_one_inside() -> None:
    mask = torch.ones(1, 10, dtype=torch.bool)
    index = to_index(torch.rand(1, 50) * 0.9 + 0.05, mask.sum(-1).float())
    w = interpolation_weights(index, mask, "zeros")
    assert torch.allclose(w.sum(-1), torch.ones(1, 50), atol=1e-6)
