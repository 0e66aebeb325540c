"""The defaults are the paper's: Eq. 17 focal normalisation, Table E rows as switched, and the
video-level alignment (C.3.1) without exact-duplicate negatives."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sidetune.config import ConfigError
from sidetune.grounding.config import GroundingConfig
from sidetune.grounding.data import collate_grounding
from sidetune.grounding.losses import TERMS, LossConfig, SDSTCriterion, sigmoid_focal_loss
from sidetune.grounding.model import SDSTConfig
from sidetune.grounding.postprocess import PostprocessConfig, postprocess
from sidetune.grounding.recipe import load_grounding_config

# --- Eq. 17: 1/M ------------------------------------------------------------------------------


def test_focal_loss_defaults_to_eq_17_mean_over_queries() -> None:
    assert LossConfig().cls_normalization == "num_queries"
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 30, generator=g)
    spans = torch.rand(2, 30, 2, generator=g) * 0.5 + 0.1
    gt = [torch.tensor([[0.3, 0.2]]), torch.tensor([[0.5, 0.1], [0.8, 0.1]])]
    only_cls = LossConfig(disabled=[t for t in TERMS if t != "cls"], aux_loss=False)
    out = SDSTCriterion(only_cls)({"pred_logits": logits, "pred_spans": spans}, {"spans": gt})
    matches = only_cls.build_matcher()({"pred_logits": logits, "pred_spans": spans}, {"spans": gt})
    target = torch.zeros(2, 30)
    for b, (q, _) in enumerate(matches):
        target[b, q] = 1.0
    focal = sigmoid_focal_loss(logits, target)
    assert out["loss_cls"].item() == pytest.approx(focal.mean().item(), rel=1e-6)  # Eq. 17
    detr = SDSTCriterion(
        LossConfig(disabled=only_cls.disabled, aux_loss=False, cls_normalization="num_spans")
    )({"pred_logits": logits, "pred_spans": spans}, {"spans": gt})
    # The DETR form: sum / #GT = M * B / 3 = 20x heavier here.
    assert detr["loss_cls"].item() == pytest.approx(out["loss_cls"].item() * 30 * 2 / 3, rel=1e-5)


# --- Table E: a switched-off head is not used for ranking or matching ----------------------------


def _grounding_config(disabled: list[str]) -> GroundingConfig:
    return load_grounding_config("sdst_synthetic", [f"loss.disabled=[{','.join(disabled)}]"])


def _ranked_outputs() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    # Three disjoint windows; the class head and the actionness head disagree on the order.
    outputs = {
        "pred_logits": torch.tensor([[3.0, 0.0, -3.0]]),  # p: 0 > 1 > 2
        "pred_actionness": torch.tensor([[0.1, 0.5, 0.9]]),  # actionness: 2 > 1 > 0
        "pred_spans": torch.tensor([[[0.1, 0.1], [0.5, 0.1], [0.9, 0.1]]]),
        "saliency": torch.zeros(1, 10),
    }
    meta = {
        "qid": 1,
        "vid": "v",
        "query": "q",
        "duration": 20.0,
        "num_clips": 10,
        "clip_length": 2.0,
    }
    return outputs, [meta]


def _order(post: PostprocessConfig) -> list[float]:
    outputs, metas = _ranked_outputs()
    rows = postprocess(outputs, metas, post)
    return [w[0] for w in rows[0]["pred_relevant_windows"]]  # start seconds, best first


def test_table_e_full_model_ranks_by_eq_23() -> None:
    cfg = _grounding_config([])
    assert cfg.post.use_cls and cfg.post.use_actionness
    # sqrt(p * a): 0.952*0.1, 0.5*0.5, 0.047*0.9 -> query 1, then 0, then 2.
    assert _order(cfg.post) == [9.0, 1.0, 17.0]
    assert cfg.loss.build_matcher().cost_cls == cfg.loss.cost_cls > 0


def test_table_e_without_actionness_ranks_by_class_probability() -> None:
    cfg = _grounding_config(["actionness"])
    assert not cfg.post.use_actionness and cfg.post.use_cls
    assert _order(cfg.post) == [1.0, 9.0, 17.0]
    outputs, metas = _ranked_outputs()
    scores = [w[2] for w in postprocess(outputs, metas, cfg.post)[0]["pred_relevant_windows"]]
    assert scores[0] == pytest.approx(1 / (1 + math.exp(-3.0)), abs=1e-4)  # confidence = p


def test_table_e_without_cls_ranks_by_actionness_and_matches_without_class_cost() -> None:
    cfg = _grounding_config(["cls"])
    assert not cfg.post.use_cls and cfg.post.use_actionness
    assert _order(cfg.post) == [17.0, 9.0, 1.0]
    matcher = cfg.loss.build_matcher()
    assert matcher.cost_cls == 0.0
    # Two queries equally far from the GT (L1 and IoU tie): only the logits could decide.
    spans = torch.tensor([[[0.4, 0.2], [0.6, 0.2]]])
    gt = {"spans": [torch.tensor([[0.5, 0.2]])]}
    for logits in (torch.tensor([[5.0, -5.0]]), torch.tensor([[-5.0, 5.0]])):
        cost = matcher.cost_matrix(logits[None], spans[None], gt["spans"][0][None])
        assert cost[0, 0, 0, 0].item() == pytest.approx(cost[0, 0, 1, 0].item())
    with_cls = LossConfig().build_matcher()
    cost = with_cls.cost_matrix(torch.tensor([[[5.0, -5.0]]]), spans[None], gt["spans"][0][None])
    assert cost[0, 0, 0, 0] < cost[0, 0, 1, 0]


def test_table_e_cannot_switch_off_both_ranking_heads() -> None:
    with pytest.raises(ConfigError, match="rank"):
        _grounding_config(["cls", "actionness"])
    with pytest.raises(ConfigError, match="rank"):
        PostprocessConfig(use_cls=False, use_actionness=False)


# --- C.3.1: queries of the same video are not each other's negatives ------------------------------


def _align_outputs(video: torch.Tensor, text: torch.Tensor) -> dict[str, Any]:
    b, _, t, _ = video.shape
    return {
        "video_levels": video,
        "text_pooled": text,
        "video_mask": torch.ones(b, t, dtype=torch.bool),
    }


def _video_align(same_video: str, video_ids: list[int] | None) -> tuple[torch.Tensor, Any]:
    torch.manual_seed(0)
    k, t, f = 2, 4, 8
    video = torch.randn(3, k, t, f)
    video[1] = video[0]  # samples 0 and 1: two queries of the same video share V^l
    text = torch.randn(3, k, f)
    sal = torch.zeros(3, t)
    sal[:, 1] = 1.0  # clip 1 is the only positive of every sample
    cfg = LossConfig(disabled=[t for t in TERMS if t != "align_video"], align_same_video=same_video)  # type: ignore[arg-type]
    targets: dict[str, Any] = {"saliency": sal}
    if video_ids is not None:
        targets["video_ids"] = torch.tensor(video_ids)
    out = SDSTCriterion(cfg)(_align_outputs(video, text), targets)
    return out["loss_align_video"] / cfg.weight_align_video, (video, text)


def _reference(video: torch.Tensor, text: torch.Tensor, negatives: dict[int, list[int]]) -> float:
    v = F.normalize(video[:, :, 1], dim=-1)  # (B, K, F), the positive clip
    tx = F.normalize(text, dim=-1)
    terms = []
    for b, others in negatives.items():
        for lvl in range(v.shape[1]):
            cands = [b, *others]
            logits = torch.stack([v[c, lvl] @ tx[b, lvl] for c in cands]) / 0.07
            terms.append(torch.logsumexp(logits, 0) - logits[0])
    return torch.stack(terms).mean().item()


def test_same_video_negatives_are_masked_by_default() -> None:
    assert LossConfig().align_same_video == "mask"
    masked, (video, text) = _video_align("mask", [0, 0, 1])
    want = _reference(video, text, {0: [2], 1: [2], 2: [0, 1]})
    assert masked.item() == pytest.approx(want, rel=1e-5)
    literal, _ = _video_align("keep", [0, 0, 1])
    want_literal = _reference(video, text, {0: [1, 2], 1: [0, 2], 2: [0, 1]})
    assert literal.item() == pytest.approx(want_literal, rel=1e-5)
    assert masked.item() != pytest.approx(literal.item())
    # Without video ids every sample counts as its own video (the literal form).
    unknown, _ = _video_align("mask", None)
    assert unknown.item() == pytest.approx(want_literal, rel=1e-5)


def test_collate_gives_equal_ids_to_queries_of_one_video() -> None:
    def sample(qid: int, vid: str) -> dict[str, Any]:
        return {
            "video_feats": np.zeros((2, 4, 3), np.float32),
            "text_feats": np.zeros((2, 2, 3), np.float32),
            "spans": np.asarray([[0.5, 0.2]], np.float32),
            "saliency": np.ones(4, np.float32),
            "meta": {"qid": qid, "vid": vid},
        }

    batch = collate_grounding([sample(1, "a"), sample(2, "b"), sample(3, "a"), sample(4, "c")])
    assert batch["targets"]["video_ids"].tolist() == [0, 1, 0, 2]


# --- the paper-literal RDSA is the default of every preset ---------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "sdst_qvhighlights",
        "sdst_qvhighlights_llama",
        "sdst_charades",
        "sdst_tacos",
        "sdst_synthetic",
    ],
)
def test_presets_use_the_paper_defaults(name: str) -> None:
    cfg = load_grounding_config(name)
    assert cfg.model.attention == "rdsa" and cfg.model.rdsa_use_latent is False
    assert cfg.loss.cls_normalization == "num_queries"
    assert cfg.loss.align_same_video == "mask"
    assert SDSTConfig().rdsa_use_latent is False


def test_data_text_cls_is_legacy_model_text_cls_decides() -> None:
    """``data.text_cls`` was read nowhere; the CLS handling is ``model.text_cls`` alone. Saved
    run configs still carry the key: they load, with a warning that it does nothing."""
    assert load_grounding_config("sdst_synthetic").data.text_cls is None
    with pytest.warns(FutureWarning, match=r"data\.text_cls=False is ignored"):
        cfg = load_grounding_config("sdst_synthetic", ["data.text_cls=false"])
    assert cfg.model.text_cls is True and cfg.data.text_cls is None
    assert load_grounding_config("sdst_qvhighlights_llama").model.text_cls is False


@pytest.mark.parametrize(
    ("disabled", "terms", "use_cls", "use_actionness"),
    [
        ([], set(TERMS), True, True),
        (["l1"], set(TERMS) - {"l1"}, True, True),
        (["iou"], set(TERMS) - {"iou"}, True, True),
        (["align"], set(TERMS) - {"align_video", "align_layer"}, True, True),
        (["actionness"], set(TERMS) - {"actionness"}, True, False),
        (["cls"], set(TERMS) - {"cls"}, False, True),
    ],
)
def test_table_e_rows(
    disabled: list[str], terms: set[str], use_cls: bool, use_actionness: bool
) -> None:
    """Each Table E row: which terms train, what ranks the moments, what the matcher costs."""
    cfg = _grounding_config(disabled)
    assert set(cfg.loss.weight_dict()) == terms
    assert (cfg.post.use_cls, cfg.post.use_actionness) == (use_cls, use_actionness)
    matcher = cfg.loss.build_matcher()
    assert (matcher.cost_cls > 0) == use_cls
    assert (matcher.cost_l1, matcher.cost_iou) == (cfg.loss.cost_l1, cfg.loss.cost_iou)
