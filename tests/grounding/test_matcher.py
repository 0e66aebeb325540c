from __future__ import annotations

import math

import pytest
import torch

from sidetune.grounding.matcher import HungarianMatcher, focal_class_cost
from sidetune.grounding.span_utils import (
    generalized_temporal_iou,
    pad_spans,
    span_cxw_to_xx,
)


def _as_pairs(match: tuple[torch.Tensor, torch.Tensor]) -> set[tuple[int, int]]:
    return set(zip(match[0].tolist(), match[1].tolist()))


def _separated_problem() -> tuple[dict[str, torch.Tensor], dict[str, list[torch.Tensor]]]:
    """Each GT span has one clearly closest prediction, so the optimum is unique."""
    gt = torch.tensor([[0.15, 0.1], [0.5, 0.2], [0.85, 0.1]])
    spans = torch.tensor(
        [[0.52, 0.18], [0.3, 0.05], [0.14, 0.12], [0.7, 0.05], [0.86, 0.09], [0.4, 0.4]]
    )
    outputs = {"pred_logits": torch.zeros(1, 6), "pred_spans": spans[None]}
    return outputs, {"spans": [gt]}


def test_expected_assignment_and_permutation_equivariance() -> None:
    matcher = HungarianMatcher()
    outputs, targets = _separated_problem()
    (match,) = matcher(outputs, targets)
    assert _as_pairs(match) == {(2, 0), (0, 1), (4, 2)}

    perm = torch.tensor([5, 3, 0, 4, 1, 2])  # new query i = old query perm[i]
    permuted = {k: v[:, perm] for k, v in outputs.items()}
    (pmatch,) = matcher(permuted, targets)
    inverse = torch.argsort(perm)
    assert _as_pairs(pmatch) == {(int(inverse[q]), g) for q, g in _as_pairs(match)}


def test_perfect_predictions_match_themselves() -> None:
    torch.manual_seed(1)
    gt = [torch.tensor([[0.2, 0.1], [0.6, 0.3]]), torch.tensor([[0.5, 0.5]])]
    spans = torch.rand(2, 5, 2) * 0.5 + 0.1
    logits = torch.full((2, 5), -3.0)
    slots = [[3, 1], [4]]  # where each GT is predicted exactly
    for b, slot in enumerate(slots):
        spans[b, slot] = gt[b]
        logits[b, slot] = 3.0
    matches = HungarianMatcher()({"pred_logits": logits, "pred_spans": spans}, {"spans": gt})
    assert _as_pairs(matches[0]) == {(3, 0), (1, 1)}
    assert _as_pairs(matches[1]) == {(4, 0)}


@pytest.mark.parametrize("num_gt", [0, 1, 3, 5, 8])
def test_number_of_matches_is_min_queries_gt(num_gt: int) -> None:
    num_queries = 5
    gt_spans = torch.stack((torch.rand(num_gt), 0.05 + 0.2 * torch.rand(num_gt)), -1)
    gt = [gt_spans, torch.zeros(0, 2)]
    outputs = {
        "pred_logits": torch.randn(2, num_queries),
        "pred_spans": torch.rand(2, num_queries, 2),
    }
    matches = HungarianMatcher()(outputs, {"spans": gt})
    q, g = matches[0]
    assert len(q) == len(g) == min(num_queries, num_gt)
    assert len(set(q.tolist())) == len(q) and len(set(g.tolist())) == len(g)  # one-to-one
    assert q.dtype == g.dtype == torch.long
    assert len(matches[1][0]) == 0  # sample without GT: no match


def test_all_samples_without_gt() -> None:
    outputs = {"pred_logits": torch.randn(3, 4), "pred_spans": torch.rand(3, 4, 2)}
    matches = HungarianMatcher()(outputs, {"spans": [torch.zeros(0, 2)] * 3})
    assert [len(q) for q, _ in matches] == [0, 0, 0]


def test_cost_matrix_matches_direct_formula() -> None:
    matcher = HungarianMatcher(cost_cls=2.0, cost_l1=5.0, cost_iou=2.0, iou_type="giou")
    logits = torch.randn(2, 3, 4)  # (L, B, M)
    spans = torch.rand(2, 3, 4, 2) * 0.5 + 0.05
    gt_list = [torch.rand(2, 2) * 0.5 + 0.05, torch.rand(1, 2) * 0.5 + 0.05, torch.zeros(0, 2)]
    gt, _ = pad_spans(gt_list)
    cost = matcher.cost_matrix(logits, spans, gt)
    assert cost.shape == (2, 3, 4, 2)
    lvl, b, m, n = 1, 0, 2, 1
    p = torch.sigmoid(logits[lvl, b, m])
    cls = 0.25 * (1 - p) ** 2 * -torch.log(p) - 0.75 * p**2 * -torch.log(1 - p)
    l1 = (spans[lvl, b, m] - gt_list[b][n]).abs().sum()
    giou = generalized_temporal_iou(
        span_cxw_to_xx(spans[lvl, b, m][None]), span_cxw_to_xx(gt_list[b][n][None])
    )[0, 0]
    assert cost[lvl, b, m, n].item() == pytest.approx(
        (2 * cls + 5 * l1 - 2 * giou).item(), rel=1e-5
    )


def test_focal_class_cost_prefers_confident_queries() -> None:
    cost = focal_class_cost(torch.tensor([-4.0, 0.0, 4.0]))
    assert cost[0] > cost[1] > cost[2]
    assert math.isfinite(focal_class_cost(torch.tensor([80.0, -80.0])).sum().item())


def test_multi_level_match_equals_per_level_forward() -> None:
    matcher = HungarianMatcher(iou_type="iou")
    logits = torch.randn(3, 2, 6)
    spans = torch.rand(3, 2, 6, 2) * 0.5 + 0.05
    gt = [torch.rand(2, 2) * 0.4 + 0.1, torch.rand(3, 2) * 0.4 + 0.1]
    padded, _ = pad_spans(gt)
    stacked = matcher.match(logits, spans, padded, [2, 3])
    for level in range(3):
        single = matcher({"pred_logits": logits[level], "pred_spans": spans[level]}, {"spans": gt})
        for got, want in zip(stacked[level], single):
            assert _as_pairs(got) == _as_pairs(want)


def test_non_finite_predictions_raise() -> None:
    spans = torch.rand(1, 3, 2)
    spans[0, 1, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite"):
        HungarianMatcher()(
            {"pred_logits": torch.zeros(1, 3), "pred_spans": spans}, {"spans": [torch.rand(1, 2)]}
        )


def test_matcher_has_no_grad() -> None:
    spans = torch.rand(1, 3, 2, requires_grad=True)
    logits = torch.zeros(1, 3, requires_grad=True)
    cost = HungarianMatcher().cost_matrix(logits[None], spans[None], torch.rand(1, 2, 2))
    assert not cost.requires_grad
