"""Temporal span geometry: format conversions and (generalized) IoU, vectorized.

Spans are 1-D intervals stored in the last dimension (size 2), either as ``(center, width)``
("cxw", the model's parameterization) or ``(start, end)`` ("xx", what files and metrics use).
Every function broadcasts over arbitrary leading dimensions, so the same code serves a single
sample, a batch, or a stack of decoder levels.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Two zero-width spans have a zero union; the clamp makes their IoU 0 instead of NaN.
_EPS = 1e-6


def span_cxw_to_xx(spans: Tensor) -> Tensor:
    """``(..., 2)`` ``(center, width)`` -> ``(..., 2)`` ``(start, end)``."""
    center, width = spans.unbind(-1)
    return torch.stack((center - 0.5 * width, center + 0.5 * width), dim=-1)


def span_xx_to_cxw(spans: Tensor) -> Tensor:
    """``(..., 2)`` ``(start, end)`` -> ``(..., 2)`` ``(center, width)``."""
    start, end = spans.unbind(-1)
    return torch.stack((0.5 * (start + end), end - start), dim=-1)


def _inter_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection and union of broadcastable ``(..., 2)`` xx spans -> ``(...)`` each."""
    inter = (torch.minimum(a[..., 1], b[..., 1]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
    return inter, union


def _giou_from(a: Tensor, b: Tensor, inter: Tensor, union: Tensor) -> Tensor:
    iou = inter / union.clamp(min=_EPS)
    enclose = (torch.maximum(a[..., 1], b[..., 1]) - torch.minimum(a[..., 0], b[..., 0])).clamp(
        min=0
    )
    return iou - (enclose - union) / enclose.clamp(min=_EPS)


def temporal_iou(spans1: Tensor, spans2: Tensor) -> Tensor:
    """Pairwise IoU of xx spans.

    Args:
        spans1: ``(..., N, 2)`` ``(start, end)``.
        spans2: ``(..., M, 2)`` ``(start, end)``; leading dims broadcast with ``spans1``.

    Returns:
        ``(..., N, M)`` IoU in ``[0, 1]`` (0 where both spans have zero width).
    """
    a, b = spans1.unsqueeze(-2), spans2.unsqueeze(-3)
    inter, union = _inter_union(a, b)
    return inter / union.clamp(min=_EPS)


def generalized_temporal_iou(spans1: Tensor, spans2: Tensor) -> Tensor:
    """Pairwise generalized IoU (GIoU) of xx spans: ``(..., N, 2), (..., M, 2) -> (..., N, M)``.

    ``GIoU = IoU - (|C| - |A u B|) / |C|`` with ``C`` the smallest enclosing span; in ``[-1, 1]``.
    """
    a, b = spans1.unsqueeze(-2), spans2.unsqueeze(-3)
    inter, union = _inter_union(a, b)
    return _giou_from(a, b, inter, union)


def temporal_iou_elementwise(spans1: Tensor, spans2: Tensor) -> Tensor:
    """IoU of corresponding xx spans: broadcastable ``(..., 2), (..., 2) -> (...)``."""
    inter, union = _inter_union(spans1, spans2)
    return inter / union.clamp(min=_EPS)


def generalized_temporal_iou_elementwise(spans1: Tensor, spans2: Tensor) -> Tensor:
    """GIoU of corresponding xx spans: broadcastable ``(..., 2), (..., 2) -> (...)``."""
    inter, union = _inter_union(spans1, spans2)
    return _giou_from(spans1, spans2, inter, union)


def pad_spans(spans: list[Tensor], device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Stack a ragged list of span sets into a padded batch.

    Args:
        spans: ``B`` tensors of shape ``(N_i, 2)`` (any format; ``N_i`` may be 0).
        device: where the result lives (default: the first tensor's device).

    Returns:
        ``padded`` ``(B, N_max, 2)`` float32 (padding rows are ``(0.5, 0)`` in cxw terms,
        a harmless zero-width span) and ``mask`` ``(B, N_max)`` bool, True for real spans.
    """
    if device is None:
        device = spans[0].device if spans else torch.device("cpu")
    sizes = torch.tensor([int(s.shape[0]) for s in spans], dtype=torch.long)
    n_max = int(sizes.max()) if len(spans) else 0
    padded = torch.zeros(len(spans), n_max, 2, device=device)
    padded[..., 0] = 0.5
    mask = torch.zeros(len(spans), n_max, dtype=torch.bool, device=device)
    total = int(sizes.sum())
    if total:
        # One scatter instead of a copy per sample: row = sample, column = rank within it.
        flat = torch.cat([s.reshape(-1, 2) for s in spans]).to(device=device, dtype=torch.float32)
        rows = torch.repeat_interleave(torch.arange(len(spans)), sizes)
        starts = torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes)
        cols = torch.arange(total) - starts
        rows, cols = rows.to(device), cols.to(device)
        padded[rows, cols] = flat
        mask[rows, cols] = True
    return padded, mask
