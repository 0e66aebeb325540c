"""1D linear ("bilinear" in the paper) sampling and deformable aggregation (Eq. 9 / Eq. 28).

Positions are normalized to each sample's *valid* timeline: ``u in [0, 1]`` covers the
``valid_len`` real clips of that sample, clip ``i`` spanning ``[i / L, (i + 1) / L)`` so its
centre sits at ``(i + 0.5) / L`` (the ``align_corners=False`` convention of ``grid_sample``).
Padded clips (``t >= valid_len``) are never read.

Instead of gathering neighbours, sampling is written as a dense interpolation matrix built
from the tent kernel ``max(0, 1 - |x - t|)`` (exactly linear interpolation), followed by one
batched matmul with the values. For temporal grounding ``T`` is small (<= a few hundred
clips), so the ``(..., T)`` weights are cheap, fully vectorized and differentiable w.r.t. both
the values and the sampling positions.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Padding = Literal["zeros", "border"]


def valid_lengths(mask: Tensor) -> Tensor:
    """Number of valid clips per sample: ``(B, T) bool -> (B,)`` float."""
    return mask.sum(dim=-1).to(torch.float32)


def to_index(u: Tensor, valid_len: Tensor) -> Tensor:
    """Normalized positions ``u`` (B, ...) -> fractional clip index (B, ...)."""
    shape = (valid_len.shape[0],) + (1,) * (u.ndim - 1)
    return u * valid_len.view(shape).to(u.dtype) - 0.5


def interpolation_weights(index: Tensor, mask: Tensor, padding: Padding = "zeros") -> Tensor:
    """Linear-interpolation weights of fractional indices over the clip axis.

    Args:
        index: ``(B, *N)`` fractional clip indices.
        mask: ``(B, T)`` bool, True = valid clip (valid clips are assumed left-aligned).
        padding: ``"zeros"`` - positions outside ``[0, L-1]`` blend with zeros (as
            ``grid_sample(padding_mode="zeros")``); ``"border"`` - positions are clamped to
            the valid range first.
    Returns:
        ``(B, *N, T)`` weights; each row sums to 1 inside the valid range and no weight
        falls on a padded clip.
    """
    b, t = mask.shape
    shape = (b,) + (1,) * (index.ndim - 1)
    if padding == "border":
        # Clamped into [0, L-1], the tent never reaches a padded clip: no masking needed.
        last = (mask.sum(dim=-1) - 1).clamp(min=0).to(index.dtype)
        index = torch.minimum(index.clamp(min=0), last.view(shape))
    grid = torch.arange(t, device=index.device, dtype=index.dtype)
    w = (1.0 - (index.unsqueeze(-1) - grid).abs()).clamp(min=0)
    if padding == "border":
        return w
    # Zero padding: whatever weight falls on a padded clip reads a zero.
    return w * mask.view((b,) + (1,) * (index.ndim - 1) + (t,)).to(w.dtype)


def sample_1d(x: Tensor, u: Tensor, mask: Tensor, padding: Padding = "border") -> Tensor:
    """Linearly sample features at normalized positions.

    Shapes: x ``(B, T, C)``, u ``(B, N)`` in [0, 1] of each valid timeline, mask ``(B, T)``
    -> ``(B, N, C)``.
    """
    w = interpolation_weights(to_index(u, valid_lengths(mask)), mask, padding)
    return torch.bmm(w.to(x.dtype), x)


def deformable_aggregate_1d(
    value: Tensor,
    locations: Tensor,
    weights: Tensor,
    mask: Tensor,
    padding: Padding = "zeros",
) -> Tensor:
    """Multi-head deformable aggregation ``S = sum_p A_p V[loc_p]`` (Eq. 9).

    Args:
        value: ``(B, H, T, Dh)`` per-head values (padded clips are never read).
        locations: ``(B, M, H, P)`` normalized sampling positions.
        weights: ``(B, M, H, P)`` attention weights (e.g. softmax over P).
        mask: ``(B, T)`` bool valid clips.
    Returns:
        ``(B, M, H * Dh)``.
    """
    b, h, _, dh = value.shape
    m = locations.shape[1]
    tent = interpolation_weights(to_index(locations, valid_lengths(mask)), mask, padding)
    # (B, M, H, P, T) x (B, M, H, P) -> (B, H, M, T): one sparse-in-spirit matrix per head.
    w = torch.einsum("bmhpt,bmhp->bhmt", tent, weights.to(tent.dtype))
    out = torch.matmul(w.to(value.dtype), value)  # (B, H, M, Dh)
    return out.transpose(1, 2).reshape(b, m, h * dh)
