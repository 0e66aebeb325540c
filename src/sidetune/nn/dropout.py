"""Dropout whose mask comes from ``torch.rand`` instead of ``bernoulli_`` (on the CPU).

Same distribution as ``nn.Dropout`` (every element kept with probability ``1 - p`` and scaled
by ``1 / (1 - p)``), a different random stream. On the CPU ``Tensor.bernoulli_`` draws one
element at a time: 21 ms for the (8640, 256) hidden of SDST's video projection at the paper's
shapes, against 5 ms for ``torch.rand(...) >= p`` on the 2-core development machine
(``bench/bench_cpu_linear.py --dropout``). The backward keeps only the boolean mask. On
accelerators ``F.dropout`` (one fused kernel) is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Zero each element of ``x`` with probability ``p``, scale the rest by ``1 / (1 - p)``.

    The uniforms are float32 whatever the dtype of ``x`` (a bf16 uniform has 8 bits: the keep
    probability would be rounded)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training)  # accelerators have a fused dropout kernel
    if p == 1.0:
        return x * 0.0  # zeros that stay in the graph, as nn.Dropout's
    keep = torch.rand(x.shape, device=x.device, dtype=torch.float32) >= p
    return torch.where(keep, x, 0.0) * (1.0 / (1.0 - p))


class Dropout(nn.Module):
    """Module form of :func:`dropout` (a drop-in ``nn.Dropout`` without ``inplace``)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
