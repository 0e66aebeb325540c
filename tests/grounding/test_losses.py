from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sidetune.config import ConfigError, from_dict
from sidetune.grounding.losses import (
    TERMS,
    CriterionInputError,
    LossConfig,
    SDSTCriterion,
    sigmoid_focal_loss,
)
from sidetune.grounding.span_utils import span_cxw_to_xx, temporal_iou

B, M, K, T, FEAT = 3, 6, 3, 8, 16
LENGTHS = (8, 5, 6)  # valid clips per sample: clip j may not exist in other samples


class TinyPrediction(nn.Module):
    """Free parameters shaped like the SDST output dict (no model needed)."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.randn(K, B, M))
        self.spans = nn.Parameter(torch.randn(K, B, M, 2))
        self.actionness = nn.Parameter(torch.randn(B, M))
        self.saliency = nn.Parameter(torch.randn(B, T))
        self.video = nn.Parameter(torch.randn(B, K, T, FEAT))
        self.text = nn.Parameter(torch.randn(B, K, FEAT))

    def forward(self) -> dict[str, Any]:
        spans = self.spans.sigmoid()
        return {
            "pred_logits": self.logits[-1],
            "pred_spans": spans[-1],
            "pred_actionness": self.actionness.sigmoid(),
            "saliency": torch.tanh(self.saliency),
            "aux_outputs": [
                {"pred_logits": self.logits[i], "pred_spans": spans[i]} for i in range(K - 1)
            ],
            "video_levels": self.video,
            "text_pooled": self.text,
            "video_mask": torch.arange(T)[None] < torch.tensor(LENGTHS)[:, None],
        }


def make_targets() -> dict[str, Any]:
    spans = [
        torch.tensor([[0.3, 0.2], [0.7, 0.1]]),
        torch.tensor([[0.5, 0.4]]),
        torch.zeros(0, 2),  # a sample without GT moments
    ]
    saliency = torch.zeros(B, T)
    saliency[0, 1:4] = torch.tensor([4.0, 8.0, 2.0])
    saliency[0, 5] = 3.0
    saliency[1, 1:4] = torch.tensor([1.0, 1.0, 6.0])
    return {"spans": spans, "saliency": saliency}


def only(term: str, **kw: Any) -> LossConfig:
    return LossConfig(disabled=[t for t in TERMS if t != term], **kw)


# --- config -----------------------------------------------------------------------------------


def test_default_weights_are_table_g_chosen() -> None:
    assert LossConfig().weight_dict() == {
        "cls": 1.0,
        "l1": 1.0,
        "iou": 1.0,
        "actionness": 1.0,
        "saliency": 0.1,
        "align_video": 0.1,
        "align_layer": 0.1,
    }


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="unknown loss term"):
        LossConfig(disabled=["giou"])
    with pytest.raises(ConfigError, match="weight_l1"):
        LossConfig(weight_l1=-1.0)
    with pytest.raises(ConfigError, match="loss"):
        from_dict(LossConfig, {"saliency_temperature": 0.0}, prefix="loss")
    cfg = from_dict(LossConfig, {"disabled": ["align", "act" + "ionness"], "weight_cls": 2})
    assert set(cfg.weight_dict()) == {"cls", "l1", "iou", "saliency"}


# --- output dict --------------------------------------------------------------------------------


def test_all_terms_present_finite_and_summed() -> None:
    out = SDSTCriterion()(TinyPrediction()(), make_targets())
    expected = {"loss", "loss_actionness", "loss_saliency", "loss_align_video", "loss_align_layer"}
    for term in ("cls", "l1", "iou"):
        expected |= {f"loss_{term}"} | {f"loss_{term}_{i}" for i in range(K - 1)}
    assert set(out) == expected
    assert all(torch.isfinite(v) and v.ndim == 0 for v in out.values())
    parts = sum(v for k, v in out.items() if k != "loss")
    assert torch.allclose(out["loss"], parts)


def test_weights_scale_terms() -> None:
    pred, targets = TinyPrediction()(), make_targets()
    torch.manual_seed(3)
    base = SDSTCriterion()(pred, targets)
    torch.manual_seed(3)
    scaled = SDSTCriterion(LossConfig(weight_iou=3.0, weight_saliency=0.5))(pred, targets)
    assert torch.allclose(scaled["loss_iou_1"], 3 * base["loss_iou_1"])
    assert torch.allclose(scaled["loss_saliency"], 5 * base["loss_saliency"])
    assert torch.allclose(scaled["loss_cls"], base["loss_cls"])


def test_disabled_terms_are_absent_and_not_computed() -> None:
    pred, targets = TinyPrediction()(), make_targets()
    out = SDSTCriterion(LossConfig(disabled=["align", "l1"], weight_actionness=0.0))(pred, targets)
    assert not any(k.startswith(("loss_align", "loss_l1", "loss_actionness")) for k in out)
    assert "loss_iou_0" in out and "loss_saliency" in out
    # Not computed at all: the inputs those terms need may be missing.
    for key in ("video_levels", "text_pooled", "pred_actionness"):
        del pred[key]
    SDSTCriterion(LossConfig(disabled=["align", "actionness"]))(pred, targets)
    with pytest.raises(CriterionInputError, match="video_levels"):
        SDSTCriterion(only("align_video"))(pred, targets)


def test_deep_supervision_switch_and_encoder_proposals() -> None:
    pred = TinyPrediction()()
    pred["enc_outputs"] = {"pred_logits": torch.randn(B, M), "pred_spans": torch.rand(B, M, 2)}
    out = SDSTCriterion()(pred, make_targets())
    assert {"loss_cls_enc", "loss_l1_enc", "loss_iou_enc", "loss_cls_1"} <= set(out)
    out = SDSTCriterion(LossConfig(aux_loss=False))(pred, make_targets())
    assert "loss_cls" in out and not any(k.endswith(("_0", "_enc")) for k in out)


def test_no_nan_without_any_target() -> None:
    model = TinyPrediction()
    targets = {"spans": [torch.zeros(0, 2)] * B, "saliency": torch.zeros(B, T)}
    out = SDSTCriterion()(model(), targets)
    assert all(torch.isfinite(v) for v in out.values())
    for key in ("loss_l1", "loss_iou_1", "loss_saliency", "loss_align_video", "loss_align_layer"):
        assert out[key].item() == 0.0
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_padded_clips_do_not_leak() -> None:
    model = TinyPrediction()
    pred, targets = model(), make_targets()
    valid = pred["video_mask"]
    # Padded clips of the saliency output are arbitrary, even non-finite.
    pred["saliency"] = torch.where(valid, pred["saliency"], torch.tensor(float("nan")))
    out = SDSTCriterion(only("saliency", saliency_positives=0))(pred, targets)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    grad = model.saliency.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert (grad[~valid] == 0).all()


# --- individual terms against direct formulas ----------------------------------------------------


def test_sigmoid_focal_loss_matches_direct_formula() -> None:
    logits = torch.tensor([-2.0, -0.3, 0.0, 1.5, 4.0])
    target = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    alpha, gamma = 0.25, 2.0
    p = torch.sigmoid(logits)
    want = torch.where(
        target > 0,
        -alpha * (1 - p) ** gamma * torch.log(p),
        -(1 - alpha) * p**gamma * torch.log(1 - p),
    )
    assert torch.allclose(sigmoid_focal_loss(logits, target, alpha, gamma), want, atol=1e-6)


def _single_gt_prediction() -> tuple[dict[str, Any], dict[str, Any]]:
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    spans = torch.tensor([[[0.3, 0.2], [0.8, 0.1], [0.2, 0.3], [0.5, 0.9]]])
    pred = {"pred_logits": logits, "pred_spans": spans}
    return pred, {"spans": [torch.tensor([[0.3, 0.2]])], "saliency": torch.zeros(1, 4)}


@pytest.mark.parametrize("norm", ["num_spans", "num_queries"])
def test_cls_loss_formula(norm: str) -> None:
    pred, targets = _single_gt_prediction()  # query 0 is a perfect match
    out = SDSTCriterion(only("cls", cls_normalization=norm))(pred, targets)
    focal = sigmoid_focal_loss(pred["pred_logits"][0], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    want = focal.sum() / 1 if norm == "num_spans" else focal.mean()
    assert out["loss_cls"].item() == pytest.approx(want.item(), rel=1e-6)


def test_perfect_spans_give_zero_regression_loss() -> None:
    pred, targets = _single_gt_prediction()
    out = SDSTCriterion(LossConfig(disabled=["cls", "actionness", "saliency", "align"]))(
        pred, targets
    )
    assert out["loss_l1"].item() == pytest.approx(0.0, abs=1e-7)
    assert out["loss_iou"].item() == pytest.approx(0.0, abs=1e-6)


def test_regression_loss_values_and_giou_option() -> None:
    pred = {"pred_logits": torch.zeros(1, 1), "pred_spans": torch.tensor([[[0.5, 0.2]]])}
    targets = {"spans": [torch.tensor([[0.6, 0.2]])]}  # [0.4,0.6] vs [0.5,0.7]: IoU 1/3
    cfg = LossConfig(disabled=["cls", "actionness", "saliency", "align"])
    out = SDSTCriterion(cfg)(pred, targets)
    assert out["loss_l1"].item() == pytest.approx(0.1, abs=1e-6)
    assert out["loss_iou"].item() == pytest.approx(2 / 3, abs=1e-6)
    far = {"pred_logits": torch.zeros(1, 1), "pred_spans": torch.tensor([[[0.1, 0.1]]])}
    cfg_g = LossConfig(disabled=["cls", "l1", "actionness", "saliency", "align"], iou_type="giou")
    giou_loss = SDSTCriterion(cfg_g)(far, targets)["loss_iou"].item()
    # [0.05,0.15] vs [0.5,0.7]: IoU 0, enclosing 0.65, union 0.3 -> GIoU = -0.35/0.65
    assert giou_loss == pytest.approx(1 + 0.35 / 0.65, abs=1e-5)


def test_actionness_target_is_max_iou() -> None:
    spans = torch.tensor([[[0.5, 0.2], [0.1, 0.1], [0.35, 0.3]], [[0.5, 0.5]] * 3])
    act = torch.tensor([[0.2, 0.4, 0.9], [0.1, 0.2, 0.3]])
    pred = {"pred_logits": torch.zeros(2, 3), "pred_spans": spans, "pred_actionness": act}
    gt = [torch.tensor([[0.5, 0.2], [0.4, 0.2]]), torch.zeros(0, 2)]
    out = SDSTCriterion(only("actionness"))(pred, {"spans": gt})
    iou = temporal_iou(span_cxw_to_xx(spans[0]), span_cxw_to_xx(gt[0])).amax(-1)
    assert iou[0].item() == pytest.approx(1.0)
    target = torch.stack((iou, torch.zeros(3)))  # no GT -> target 0
    assert out["loss_actionness"].item() == pytest.approx(
        (act - target).abs().mean().item(), rel=1e-6
    )


def test_saliency_infonce_all_positives_matches_loop() -> None:
    model = TinyPrediction()
    pred, targets = model(), make_targets()
    tau = 0.07
    out = SDSTCriterion(only("saliency", saliency_positives=0, saliency_temperature=tau))(
        pred, targets
    )
    scores, sal, valid = pred["saliency"], targets["saliency"], pred["video_mask"]
    terms = []
    for b in range(B):
        for i in range(T):
            if not (valid[b, i] and sal[b, i] > 0):
                continue
            cand = [j for j in range(T) if valid[b, j] and (sal[b, j] < sal[b, i] or j == i)]
            logits = scores[b, cand] / tau
            terms.append(-(logits[cand.index(i)] - torch.logsumexp(logits, 0)))
    want = torch.stack(terms).mean()
    assert out["loss_saliency"].item() == pytest.approx(0.1 * want.item(), rel=1e-5)


def test_saliency_sampling_is_deterministic_and_uses_positives() -> None:
    pred, targets = TinyPrediction()(), make_targets()
    crit = SDSTCriterion(only("saliency"))
    torch.manual_seed(7)
    a = crit(pred, targets)["loss_saliency"]
    torch.manual_seed(7)
    b = crit(pred, targets)["loss_saliency"]
    assert torch.equal(a, b)
    # Only one positive clip per sample when there is exactly one: value is fixed.
    single = targets["saliency"].clone()
    single[0] = 0.0
    single[0, 2] = 5.0
    single[1] = 0.0
    single[1, 3] = 1.0
    out = crit(pred, {"spans": targets["spans"], "saliency": single})["loss_saliency"]
    s, v = pred["saliency"] / 0.07, pred["video_mask"]
    ref = [
        torch.logsumexp(s[0, : LENGTHS[0]], 0) - s[0, 2],
        torch.logsumexp(s[1, : LENGTHS[1]], 0) - s[1, 3],
    ]
    assert v[0].sum() == LENGTHS[0]
    assert out.item() == pytest.approx(0.1 * torch.stack(ref).mean().item(), rel=1e-5)


def _align_reference(pred: dict[str, Any], sal: torch.Tensor, tau: float) -> tuple[float, float]:
    video = F.normalize(pred["video_levels"], dim=-1)
    text = F.normalize(pred["text_pooled"], dim=-1)
    valid = pred["video_mask"]
    vid_terms, layer_terms = [], []
    for b in range(B):
        for j in range(T):
            if not (valid[b, j] and sal[b, j] > 0):
                continue
            for lvl in range(K):
                others = [c for c in range(B) if valid[c, j]]  # includes b itself
                logits = torch.stack([video[c, lvl, j] @ text[b, lvl] for c in others]) / tau
                vid_terms.append(torch.logsumexp(logits, 0) - logits[others.index(b)])
                logits = torch.stack([video[b, m, j] @ text[b, lvl] for m in range(K)]) / tau
                layer_terms.append(torch.logsumexp(logits, 0) - logits[lvl])
    return torch.stack(vid_terms).mean().item(), torch.stack(layer_terms).mean().item()


def test_alignment_losses_match_loop_reference() -> None:
    pred, targets = TinyPrediction()(), make_targets()
    out = SDSTCriterion(LossConfig(disabled=["cls", "l1", "iou", "actionness", "saliency"]))(
        pred, targets
    )
    want_video, want_layer = _align_reference(pred, targets["saliency"], 0.07)
    assert out["loss_align_video"].item() == pytest.approx(0.1 * want_video, rel=1e-5)
    assert out["loss_align_layer"].item() == pytest.approx(0.1 * want_layer, rel=1e-5)


# --- every term can be optimized -------------------------------------------------------------------


@pytest.mark.parametrize("term", TERMS)
def test_each_loss_decreases_under_gradient_descent(term: str) -> None:
    model = TinyPrediction()
    targets = make_targets()
    crit = SDSTCriterion(only(term, saliency_positives=0))
    history = []
    for _ in range(12):
        loss = crit(model(), targets)["loss"]
        history.append(loss.item())
        model.zero_grad()
        loss.backward()
        # Sign descent: scale-free across terms, and no torch.optim (its first use imports
        # torch._dynamo, seconds of test time).
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p.sub_(0.1 * p.grad.sign())
    assert all(math.isfinite(h) for h in history)
    assert history[-1] < 0.8 * history[0], (term, history[0], history[-1])
