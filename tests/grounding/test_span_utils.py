from __future__ import annotations

import pytest
import torch

from sidetune.grounding.span_utils import (
    generalized_temporal_iou,
    generalized_temporal_iou_elementwise,
    pad_spans,
    span_cxw_to_xx,
    span_xx_to_cxw,
    temporal_iou,
    temporal_iou_elementwise,
)


def test_format_roundtrip_and_values() -> None:
    cxw = torch.tensor([[0.5, 0.2], [0.1, 0.0], [0.9, 0.1]])
    xx = span_cxw_to_xx(cxw)
    assert torch.allclose(xx, torch.tensor([[0.4, 0.6], [0.1, 0.1], [0.85, 0.95]]))
    assert torch.allclose(span_xx_to_cxw(xx), cxw)
    batched = torch.rand(2, 3, 4, 2)
    assert torch.allclose(span_xx_to_cxw(span_cxw_to_xx(batched)), batched, atol=1e-6)


# (a, b, IoU, GIoU) worked by hand: intersection / union, IoU - (enclosing - union) / enclosing.
HAND = [
    ([0.0, 2.0], [1.0, 3.0], 1 / 3, 1 / 3),  # overlap 1, union 3, enclosing 3
    ([0.0, 1.0], [2.0, 3.0], 0.0, -1 / 3),  # disjoint: union 2, enclosing 3
    ([0.0, 4.0], [1.0, 2.0], 0.25, 0.25),  # containment
    ([1.0, 3.0], [1.0, 3.0], 1.0, 1.0),
    ([0.0, 1.0], [1.0, 2.0], 0.0, 0.0),  # touching
    ([0.0, 1.0], [9.0, 10.0], 0.0, -0.8),  # far apart: enclosing 10, union 2
]


@pytest.mark.parametrize(("a", "b", "iou", "giou"), HAND)
def test_iou_and_giou_hand_values(a: list[float], b: list[float], iou: float, giou: float) -> None:
    ta, tb = torch.tensor([a]), torch.tensor([b])
    assert temporal_iou(ta, tb).item() == pytest.approx(iou, abs=1e-6)
    assert generalized_temporal_iou(ta, tb).item() == pytest.approx(giou, abs=1e-6)
    assert temporal_iou_elementwise(ta, tb).item() == pytest.approx(iou, abs=1e-6)
    assert generalized_temporal_iou_elementwise(ta, tb).item() == pytest.approx(giou, abs=1e-6)


def _random_xx(*shape: int) -> torch.Tensor:
    return span_cxw_to_xx(torch.stack((torch.rand(shape), 0.01 + 0.5 * torch.rand(shape)), -1))


def test_pairwise_symmetry_shapes_and_elementwise_diagonal() -> None:
    a, b = _random_xx(5), _random_xx(7)
    for fn in (temporal_iou, generalized_temporal_iou):
        ab = fn(a, b)
        assert ab.shape == (5, 7)
        assert torch.allclose(ab, fn(b, a).T)
    assert (temporal_iou(a, b) >= 0).all() and (temporal_iou(a, b) <= 1).all()
    giou = generalized_temporal_iou(a, b)
    assert (giou >= -1).all() and (giou <= temporal_iou(a, b) + 1e-6).all()
    c = _random_xx(5)
    assert torch.allclose(temporal_iou_elementwise(a, c), temporal_iou(a, c).diagonal())
    assert torch.allclose(
        generalized_temporal_iou_elementwise(a, c), generalized_temporal_iou(a, c).diagonal()
    )
    self_iou = temporal_iou(a, a).diagonal()
    assert torch.allclose(self_iou, torch.ones(5))


def test_shift_and_scale_invariance() -> None:
    a, b = _random_xx(4), _random_xx(6)
    for fn in (temporal_iou, generalized_temporal_iou):
        ref = fn(a, b)
        assert torch.allclose(fn(a + 3.7, b + 3.7), ref, atol=1e-5)
        assert torch.allclose(fn(a * 150.0, b * 150.0), ref, atol=1e-5)


def test_batched_leading_dims_broadcast() -> None:
    a, b = _random_xx(3, 2, 5), _random_xx(2, 4)
    out = temporal_iou(a, b)
    assert out.shape == (3, 2, 5, 4)
    assert torch.allclose(out[1, 0], temporal_iou(a[1, 0], b[0]))
    assert torch.allclose(
        generalized_temporal_iou(a, b)[2, 1], generalized_temporal_iou(a[2, 1], b[1])
    )


def test_zero_width_spans_give_finite_values() -> None:
    z = torch.tensor([[0.3, 0.3]])
    assert temporal_iou(z, z).item() == 0.0
    assert torch.isfinite(generalized_temporal_iou(z, z)).all()
    assert torch.isfinite(generalized_temporal_iou_elementwise(z, torch.tensor([[0.5, 0.5]]))).all()


def test_pad_spans() -> None:
    spans = [torch.tensor([[0.1, 0.2], [0.3, 0.4]]), torch.zeros(0, 2), torch.tensor([[0.5, 0.6]])]
    padded, mask = pad_spans(spans)
    assert padded.shape == (3, 2, 2)
    assert mask.tolist() == [[True, True], [False, False], [True, False]]
    assert torch.equal(padded[0], spans[0]) and torch.equal(padded[2, :1], spans[2])
    padded, mask = pad_spans([torch.zeros(0, 2), torch.zeros(0, 2)])
    assert padded.shape == (2, 0, 2) and mask.shape == (2, 0)
