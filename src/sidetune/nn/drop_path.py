"""Stochastic depth (DropPath): drop a whole residual branch per sample."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def drop_path_scale(x: Tensor, p: float, training: bool) -> Tensor | None:
    """Per-sample factor ``(B, 1, ..., 1)`` of :func:`drop_path` (0 or ``1 / (1 - p)``), or
    None when nothing is dropped (eval mode or ``p == 0``: no random draw at all)."""
    if p <= 0.0 or not training:
        return None
    keep = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    return torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep).div_(keep)


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Zero the branch ``x`` (any shape, batch first) for a random subset of samples.

    Kept samples are rescaled by ``1 / (1 - p)`` so the expectation is unchanged.
    """
    scale = drop_path_scale(x, p, training)
    return x if scale is None else x * scale


class DropPath(nn.Module):
    """Module form of :func:`drop_path`; identity in eval mode or when ``p == 0``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.p, self.training)

    def scale(self, x: Tensor) -> Tensor | None:
        """The per-sample factor this module would multiply ``x`` by (None: identity)."""
        return drop_path_scale(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
