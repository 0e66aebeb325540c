"""Classification metrics: multi-view averaging and top-k accuracy (vectorised)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def average_views(logits: Tensor) -> Tensor:
    """Multi-view test: logits (B, V, C) -> class probabilities (B, C), softmax averaged over V."""
    if logits.ndim == 2:
        return logits.softmax(dim=-1)
    return logits.softmax(dim=-1).mean(dim=1)


def topk_correct(scores: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, Tensor]:
    """Number of samples whose label is among the top-k scores, for each k.

    scores: (B, C); labels: (B,). k larger than C counts every sample as correct.
    """
    kmax = min(max(ks), scores.shape[-1])
    top = scores.topk(kmax, dim=-1).indices  # (B, kmax)
    hits = top.eq(labels[:, None])  # (B, kmax)
    cum = hits.cumsum(dim=-1).clamp_max(1)
    return {k: cum[:, min(k, kmax) - 1].sum() for k in ks}


class AccuracyMeter:
    """Accumulates top-k hits over batches (on device; one host sync in :meth:`compute`)."""

    def __init__(self, ks: Sequence[int] = (1, 5)) -> None:
        self.ks = tuple(ks)
        self.hits: dict[int, Tensor] = {}
        self.count = 0
        self.loss_sum: Tensor | None = None

    def update(self, scores: Tensor, labels: Tensor, loss_sum: Tensor | None = None) -> None:
        for k, v in topk_correct(scores, labels, self.ks).items():
            self.hits[k] = self.hits[k] + v if k in self.hits else v
        self.count += int(labels.shape[0])
        if loss_sum is not None:
            self.loss_sum = loss_sum if self.loss_sum is None else self.loss_sum + loss_sum

    def compute(self) -> dict[str, float]:
        """``{"top1": %, "top5": %, ..., "loss": mean NLL of the averaged probabilities}``."""
        n = max(1, self.count)
        out = {f"top{k}": 100.0 * float(self.hits.get(k, torch.tensor(0))) / n for k in self.ks}
        if self.loss_sum is not None:
            out["loss"] = float(self.loss_sum) / n
        return out
