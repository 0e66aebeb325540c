"""Hungarian matching between predicted moments and ground-truth spans (SDST Sec. 3.4, C.2).

The cost of assigning query ``m`` to GT span ``n`` is::

    cost_cls * focal_class_cost(p_m) + cost_l1 * |s_m - y_n|_1 - cost_iou * (G)IoU(s_m, y_n)

computed for the whole batch (and for every decoder level at once) in torch, then solved
either on the host per sample with ``scipy.optimize.linear_sum_assignment`` (one transfer of
the cost) or on the cost's own device for all samples and levels at once
(:func:`sidetune.grounding.assignment.batched_assignment`, no host synchronisation).
``solver="auto"`` (default) uses scipy for CPU tensors and the batched torch solver elsewhere;
both return optimal assignments (tests pin that they agree).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from sidetune.grounding.assignment import batched_assignment
from sidetune.grounding.span_utils import (
    generalized_temporal_iou,
    pad_spans,
    span_cxw_to_xx,
    temporal_iou,
)
from sidetune.nn.fast import sync_free

Match = tuple[Tensor, Tensor]  # (query indices, GT indices), int64 CPU tensors of equal length


def focal_class_cost(logits: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Focal-style matching cost of calling a query "foreground": ``(...) -> (...)``.

    The difference between the focal loss for target 1 and for target 0, so that matching a
    query lowers its cost exactly by how much the classification loss would prefer it matched.
    """
    p = logits.float().sigmoid()
    pos = alpha * (1 - p).pow(gamma) * -torch.nn.functional.logsigmoid(logits.float())
    neg = (1 - alpha) * p.pow(gamma) * -torch.nn.functional.logsigmoid(-logits.float())
    return pos - neg


class HungarianMatcher(nn.Module):
    """One-to-one assignment of the ``M`` queries to the ``N_i`` GT spans of each sample.

    Args:
        cost_cls: weight of the focal-style class cost.
        cost_l1: weight of the L1 distance between ``(center, width)`` spans.
        cost_iou: weight of the negative (G)IoU.
        iou_type: ``"giou"`` (default; still ranks non-overlapping spans by distance) or ``"iou"``.
        focal_alpha, focal_gamma: parameters of the class cost.
        solver: ``"auto"`` | ``"scipy"`` | ``"torch"`` (see the module docstring).
    """

    def __init__(
        self,
        cost_cls: float = 2.0,
        cost_l1: float = 5.0,
        cost_iou: float = 2.0,
        iou_type: Literal["iou", "giou"] = "giou",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        solver: Literal["auto", "scipy", "torch"] = "auto",
    ) -> None:
        super().__init__()
        if iou_type not in ("iou", "giou"):
            raise ValueError(f"iou_type must be 'iou' or 'giou', got {iou_type!r}")
        if solver not in ("auto", "scipy", "torch"):
            raise ValueError(f"solver must be 'auto', 'scipy' or 'torch', got {solver!r}")
        self.solver = solver
        self.cost_cls = cost_cls
        self.cost_l1 = cost_l1
        self.cost_iou = cost_iou
        self.iou_type = iou_type
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    def extra_repr(self) -> str:
        return (
            f"cost_cls={self.cost_cls}, cost_l1={self.cost_l1}, cost_iou={self.cost_iou}, "
            f"iou_type={self.iou_type!r}"
        )

    @torch.no_grad()
    def cost_matrix(self, pred_logits: Tensor, pred_spans: Tensor, gt_spans: Tensor) -> Tensor:
        """Batched assignment cost.

        Args:
            pred_logits: ``(L, B, M)`` class logits of ``L`` decoder levels.
            pred_spans: ``(L, B, M, 2)`` normalized ``(center, width)``.
            gt_spans: ``(B, N, 2)`` normalized ``(center, width)``, padded.

        Returns:
            ``(L, B, M, N)`` float32 cost; padded GT columns are meaningless (never read).
        """
        pred_spans = pred_spans.float()
        gt = gt_spans.float().unsqueeze(0)  # (1, B, N, 2): broadcast over levels
        cost = self.cost_l1 * (pred_spans.unsqueeze(-2) - gt.unsqueeze(-3)).abs().sum(-1)
        iou_fn = generalized_temporal_iou if self.iou_type == "giou" else temporal_iou
        cost = cost - self.cost_iou * iou_fn(span_cxw_to_xx(pred_spans), span_cxw_to_xx(gt))
        cls = focal_class_cost(pred_logits, self.focal_alpha, self.focal_gamma)
        return cost + self.cost_cls * cls.unsqueeze(-1)

    @torch.no_grad()
    def match(
        self, pred_logits: Tensor, pred_spans: Tensor, gt_spans: Tensor, sizes: Sequence[int]
    ) -> list[list[Match]]:
        """Match every level of a stacked prediction (shapes as in :meth:`cost_matrix`).

        ``sizes[b]`` is the number of real GT spans of sample ``b`` (host ints, so that the
        cost matrix is the only device-to-host transfer).

        Returns:
            ``result[l][b] = (query_idx, gt_idx)``, int64 CPU tensors of length
            ``min(M, N_b)``; ``gt_idx`` indexes the unpadded GT list of sample ``b``.
        """
        num_levels, batch = pred_logits.shape[:2]
        if len(sizes) != batch:
            raise ValueError(f"HungarianMatcher: {len(sizes)} GT sizes for a batch of {batch}")
        if sum(sizes) == 0:
            empty = torch.zeros(0, dtype=torch.long)
            return [[(empty, empty) for _ in range(batch)] for _ in range(num_levels)]
        costs = self.cost_matrix(pred_logits, pred_spans, gt_spans).cpu().numpy()
        if not np.isfinite(costs).all():
            raise FloatingPointError(
                "HungarianMatcher: non-finite assignment cost; predictions contain NaN or inf"
            )
        result: list[list[Match]] = []
        for level in range(num_levels):
            row: list[Match] = []
            for b, n in enumerate(sizes):
                q_idx, g_idx = linear_sum_assignment(costs[level, b, :, :n])
                row.append((torch.as_tensor(q_idx).long(), torch.as_tensor(g_idx).long()))
            result.append(row)
        return result

    @torch.no_grad()
    def match_dense(
        self,
        pred_logits: Tensor,
        pred_spans: Tensor,
        gt_spans: Tensor,
        gt_mask: Tensor,
        sizes: Sequence[int] | None = None,
    ) -> Tensor:
        """The assignment as one tensor on the predictions' device.

        Args:
            pred_logits, pred_spans, gt_spans: as in :meth:`cost_matrix`.
            gt_mask: ``(B, N)`` bool, True for real (left-aligned) GT spans.
            sizes: the per-sample GT counts as host ints, if known (saves a transfer on the
                scipy path).

        Returns:
            ``(L, B, N)`` int64: the query matched to GT span ``n`` of sample ``b`` at level
            ``l``; ``-1`` for padding (and, when ``N > M``, for the spans left unmatched).
        """
        num_levels, batch, num_queries = pred_logits.shape
        n = gt_spans.shape[1]
        device = pred_logits.device
        use_torch = self.solver == "torch" or (self.solver == "auto" and sync_free(device))
        if n == 0:
            return torch.zeros(num_levels, batch, 0, dtype=torch.long, device=device)
        if use_torch and n <= num_queries:
            cost = self.cost_matrix(pred_logits, pred_spans, gt_spans)  # (L, B, M, N)
            counts = gt_mask.sum(-1).repeat(num_levels)  # (L * B,)
            flat = cost.transpose(-1, -2).reshape(num_levels * batch, n, num_queries)
            return batched_assignment(flat, counts).view(num_levels, batch, n)
        if sizes is None:
            sizes = [int(c) for c in gt_mask.sum(-1).tolist()]
        dense = np.full((num_levels, batch, n), -1, dtype=np.int64)
        for level, row in enumerate(self.match(pred_logits, pred_spans, gt_spans, sizes)):
            for b, (q_idx, g_idx) in enumerate(row):
                dense[level, b, g_idx.numpy()] = q_idx.numpy()
        return torch.from_numpy(dense).to(device)

    @torch.no_grad()
    def forward(self, outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> list[Match]:
        """DETR-style entry point for one level.

        Args:
            outputs: ``pred_logits`` ``(B, M)``, ``pred_spans`` ``(B, M, 2)`` (center, width).
            targets: ``spans``: list of ``B`` tensors ``(N_i, 2)`` normalized (center, width).

        Returns:
            ``B`` pairs ``(query_idx, gt_idx)`` of length ``min(M, N_i)``.
        """
        logits: Tensor = outputs["pred_logits"]
        spans = list(targets["spans"])
        gt, _ = pad_spans(spans, device=logits.device)
        sizes = [int(s.shape[0]) for s in spans]
        return self.match(logits.unsqueeze(0), outputs["pred_spans"].unsqueeze(0), gt, sizes)[0]
