"""Top-k accuracy and multi-view averaging."""

from __future__ import annotations

import torch

from sidetune.recognition.metrics import AccuracyMeter, average_views, topk_correct


def test_average_views_is_mean_of_softmax() -> None:
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 4.0]]])  # (B=1, V=2, C=3)
    expected = (logits[0, 0].softmax(-1) + logits[0, 1].softmax(-1)) / 2
    torch.testing.assert_close(average_views(logits)[0], expected)
    # the averaged probabilities, not the averaged logits, decide: logits mean would tie 0 vs 2
    assert average_views(logits).argmax(-1).item() == 2


def test_topk_correct_and_meter() -> None:
    scores = torch.tensor([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]])
    labels = torch.tensor([2, 0, 0])
    hits = topk_correct(scores, labels, (1, 2, 5))
    assert hits[1].item() == 1 and hits[2].item() == 2 and hits[5].item() == 3
    meter = AccuracyMeter((1, 5))
    meter.update(scores[:2], labels[:2])
    meter.update(scores[2:], labels[2:])
    out = meter.compute()
    assert abs(out["top1"] - 100 / 3) < 1e-9 and out["top5"] == 100.0
