"""SDST with its criterion fits one tiny batch: the maths trains end to end."""

from __future__ import annotations

import pytest
import torch

from sidetune.grounding.losses import LossConfig, SDSTCriterion
from sidetune.grounding.model import build_sdst, synthetic_config
from sidetune.grounding.span_utils import span_cxw_to_xx, temporal_iou


@pytest.mark.slow  # 300 steps: ~7 s of CPU
def test_overfits_one_tiny_batch() -> None:
    torch.manual_seed(0)
    b, k, t, length, fv, ft = 2, 2, 12, 4, 8, 6
    cfg = synthetic_config(
        fv, ft, hidden_dim=32, num_heads=4, num_queries=4, num_levels=k, proj_dropout=0.0,
        drop_path=0.0, roi_size=4,
    )  # fmt: skip
    model = build_sdst(cfg).train()
    g = torch.Generator().manual_seed(0)
    batch = {
        "video_feats": torch.randn(b, k, t, fv, generator=g),
        "video_mask": torch.ones(b, t, dtype=torch.bool),
        "text_feats": torch.randn(b, k, length, ft, generator=g),
        "text_mask": torch.ones(b, length, dtype=torch.bool),
    }
    gt = [torch.tensor([[0.25, 0.2]]), torch.tensor([[0.6, 0.4]])]
    saliency = torch.zeros(b, t)
    saliency[0, 2:4] = 1.0
    saliency[1, 5:10] = 1.0
    targets = {"spans": gt, "saliency": saliency, "video_ids": torch.tensor([0, 1])}
    criterion = SDSTCriterion(LossConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    for _ in range(300):
        losses = criterion(model(**batch), targets)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(**batch)
        losses = criterion(out, targets)
    # Moment retrieval (final level): matched spans on the GT, matched queries confident.
    assert losses["loss_l1"].item() < 0.03
    assert losses["loss_iou"].item() < 0.05
    assert losses["loss_cls"].item() < 0.02
    best = out["pred_logits"].argmax(-1)
    for i in range(b):
        span = out["pred_spans"][i, best[i]]
        assert torch.allclose(span, gt[i][0], atol=0.02)
    # Actionness: close to each query's max IoU with the GT (Eq. 20 target).
    iou = temporal_iou(span_cxw_to_xx(out["pred_spans"]), span_cxw_to_xx(torch.stack(gt)))
    assert (out["pred_actionness"] - iou.amax(-1)).abs().max().item() < 0.1
