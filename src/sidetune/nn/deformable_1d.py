"""1D linear ("bilinear" in the paper) sampling and deformable aggregation (Eq. 9 / Eq. 28).

Positions are normalized to each sample's *valid* timeline: ``u in [0, 1]`` covers the
``valid_len`` real clips of that sample, clip ``i`` spanning ``[i / L, (i + 1) / L)`` so its
centre sits at ``(i + 0.5) / L`` (the ``align_corners=False`` convention of ``grid_sample``).
Padded clips (``t >= valid_len``) are never read.

Sampling is written as a dense interpolation matrix ``(..., T)`` followed by one batched
matmul with the values. For temporal grounding ``T`` is small (<= a few hundred clips), so the
matrix is cheap, fully vectorized and differentiable w.r.t. both the values and the sampling
positions. Two ways to build it, with the same values and gradients:

- plain (:func:`interpolation_weights`): the tent kernel ``max(0, 1 - |x - t|)`` evaluated
  at every clip ``t``, several elementwise passes over ``(..., P, T)``;
- fast (:func:`interpolation_matrix`, the default; see :mod:`sidetune.nn.fast`): only the two
  neighbours ``floor(x)`` and ``floor(x) + 1`` have a non-zero tent, with weights
  ``1 - frac`` and ``frac``; they are scattered into a zero ``(..., T)`` matrix (already summed
  over the P points of a head), so nothing of size ``P x T`` is ever built. Gradients w.r.t.
  the positions agree too, except exactly on a clip index, where the interpolant has a kink:
  the tent's autograd then sums both one-sided slopes, the fast path takes the right-hand one.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from sidetune.nn.fast import fast_paths

Padding = Literal["zeros", "border"]


def at_least_float32(x: Tensor) -> Tensor:
    """``x`` in float32 if it is a lower-precision float (bf16 / fp16 under autocast), else as is.

    Sampling positions need more than bf16's ~3 significant digits (a quarter of a clip on a
    75-clip timeline)."""
    return x.float() if x.is_floating_point() and x.element_size() < 4 else x


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


def interpolation_matrix(
    index: Tensor, mask: Tensor, padding: Padding = "zeros", point_weights: Tensor | None = None
) -> Tensor:
    """Linear-interpolation matrix of ``P`` points per row, summed over the points.

    Args:
        index: ``(B, *N, P)`` fractional clip indices.
        mask: ``(B, T)`` bool valid clips (left-aligned).
        padding: as in :func:`interpolation_weights`.
        point_weights: ``(B, *N, P)`` weight of each point (None: 1).
    Returns:
        ``(B, *N, T)``: ``sum_p point_weights[p] * interpolation_weights(index)[p]``, built by
        scattering the two non-zero tent weights of each point.
    """
    b, t = mask.shape
    shape = (b,) + (1,) * (index.ndim - 1)
    length = mask.sum(dim=-1).view(shape)
    if padding == "border":
        last = (length - 1).clamp(min=0).to(index.dtype)
        index = torch.minimum(index.clamp(min=0), last)
    left = index.floor()
    frac = index - left
    left = left.long()
    nbr = torch.stack((left, left + 1), dim=-1)  # (B, *N, P, 2)
    weight = torch.stack((1.0 - frac, frac), dim=-1)
    if point_weights is not None:
        weight = weight * point_weights.to(weight.dtype).unsqueeze(-1)
    # Zero padding: a neighbour outside the valid clips reads a zero. Border: the clamped index
    # only reaches clip L (with weight 0) and never beyond.
    inside = (nbr >= 0) & (nbr < length.unsqueeze(-1))
    weight = weight * inside.to(weight.dtype)
    nbr = nbr.clamp(0, t - 1).flatten(-2)
    out = weight.new_zeros(*index.shape[:-1], t)
    return out.scatter_add(-1, nbr, weight.flatten(-2))


def sample_1d(x: Tensor, u: Tensor, mask: Tensor, padding: Padding = "border") -> Tensor:
    """Linearly sample features at normalized positions.

    Shapes: x ``(B, T, C)``, u ``(B, N)`` in [0, 1] of each valid timeline, mask ``(B, T)``
    -> ``(B, N, C)``.
    """
    index = to_index(u, valid_lengths(mask))
    if fast_paths():
        w = interpolation_matrix(index.unsqueeze(-1), mask, padding)
    else:
        w = interpolation_weights(index, mask, padding)
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
    index = to_index(locations, valid_lengths(mask))
    if fast_paths():
        # (B, H, M, P) points -> (B, H, M, T): one sparse-in-spirit matrix per head.
        w = interpolation_matrix(
            index.transpose(1, 2), mask, padding, point_weights=weights.transpose(1, 2)
        )
    else:
        tent = interpolation_weights(index, mask, padding)
        # (B, M, H, P, T) x (B, M, H, P) -> (B, H, M, T)
        w = torch.einsum("bmhpt,bmhp->bhmt", tent, weights.to(tent.dtype))
    out = torch.matmul(w.to(value.dtype), value)  # (B, H, M, Dh)
    return out.transpose(1, 2).reshape(b, m, h * dh)
