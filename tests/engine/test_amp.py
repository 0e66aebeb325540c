"""Mixed precision: ``train.amp=bf16`` autocasts on CPU too, so the path runs in the suite."""

from __future__ import annotations

import torch

from sidetune.engine.trainer import autocast_context
from sidetune.grounding.losses import SDSTCriterion
from sidetune.grounding.model import sdst_synthetic

CPU = torch.device("cpu")


def test_bf16_autocasts_on_cpu_and_none_or_fp16_do_not() -> None:
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast_context("bf16", CPU):
        assert torch.is_autocast_enabled("cpu")
        assert (a @ b).dtype == torch.bfloat16
    for amp in ("none", "fp16"):  # fp16 needs the GPU grad scaler: CPU runs in fp32
        with autocast_context(amp, CPU):
            assert not torch.is_autocast_enabled("cpu")
            assert (a @ b).dtype == torch.float32


def test_sdst_trains_under_cpu_bf16_autocast() -> None:
    torch.manual_seed(0)
    model = sdst_synthetic(12, 10).eval()  # no dropout: the two forwards differ by bf16 only
    b, k, t, length = 3, 2, 9, 5
    video_mask = torch.ones(b, t, dtype=torch.bool)
    video_mask[1, 6:] = False
    batch = {
        "video_feats": torch.randn(b, k, t, 12),
        "video_mask": video_mask,
        "text_feats": torch.randn(b, k, length, 10),
        "text_mask": torch.ones(b, length, dtype=torch.bool),
    }
    targets = {
        "spans": [torch.tensor([[0.3, 0.2]]), torch.tensor([[0.5, 0.4]]), torch.zeros(0, 2)],
        "saliency": (torch.arange(t) % 3 == 0).float().expand(b, t).clone(),
        "video_ids": torch.tensor([0, 0, 1]),
    }
    with torch.no_grad():
        fp32 = SDSTCriterion()(model(**batch), targets)["loss"]
    with autocast_context("bf16", CPU):
        out = model(**batch)
        losses = SDSTCriterion()(out, targets)
    assert out["pred_logits"].dtype == torch.bfloat16  # the linear layers ran in bf16
    assert losses["loss"].dtype == torch.float32  # the criterion computes in fp32
    assert torch.isfinite(losses["loss"])
    assert losses["loss"].item() != fp32.item()
    assert abs(losses["loss"].item() - fp32.item()) < 0.05 * abs(fp32.item())
    losses["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
