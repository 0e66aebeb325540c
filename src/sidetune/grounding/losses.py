"""SDST training objective (Eq. 12-14, supplementary C.1-C.3) as named, weighted terms.

``SDSTCriterion(outputs, targets)`` returns one entry per weighted term and their sum:

========================  =====================================================  =========
key                       term                                                   equation
========================  =====================================================  =========
``loss_cls``              sigmoid focal loss, matched queries -> 1, others -> 0  Eq. 17
``loss_l1``               L1 between matched ``(center, width)`` spans           Eq. 18
``loss_iou``              ``1 - IoU`` (or ``1 - GIoU``) of matched spans         Eq. 19
``loss_{cls,l1,iou}_i``   the same on decoder level ``aux_outputs[i]``           Eq. 13
``loss_{...}_enc``        the same on ``enc_outputs`` (only if the model has it)
``loss_actionness``       L1 to each query's max IoU with any GT (final level)   Eq. 20
``loss_saliency``         sampled InfoNCE ranking of per-clip saliency           Eq. 12, 16
``loss_align_video``      clip-text InfoNCE across the batch, every level        Eq. 21
``loss_align_layer``      clip-text InfoNCE across levels, every level           Eq. 22
``loss``                  sum of all of the above                                Eq. 14
========================  =====================================================  =========

Each term has a weight (defaults: Table G "Chosen") and can be switched off (Table E); a
term that is off is not computed at all and has no key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from sidetune.config import ConfigError
from sidetune.errors import SidetuneError
from sidetune.grounding.matcher import HungarianMatcher
from sidetune.grounding.span_utils import (
    generalized_temporal_iou_elementwise,
    pad_spans,
    span_cxw_to_xx,
    temporal_iou,
    temporal_iou_elementwise,
)

TERMS: tuple[str, ...] = (
    "cls",
    "l1",
    "iou",
    "actionness",
    "saliency",
    "align_video",
    "align_layer",
)
# Table E switches "align" off as one row: it covers both alignment losses.
TERM_GROUPS: dict[str, tuple[str, ...]] = {"align": ("align_video", "align_layer")}
MATCHED_TERMS: tuple[str, ...] = ("cls", "l1", "iou")

# Masked logits: finite so that a row whose candidates are all masked gives 0 * finite, not NaN.
_MASKED_LOGIT = -1e4


class CriterionInputError(SidetuneError, KeyError):
    """The model outputs or targets lack a key that an enabled loss term needs."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


@dataclass
class LossConfig:
    """``loss.*`` keys: term weights (Table G "Chosen"), switches, and matcher costs."""

    weight_cls: float = 1.0
    weight_l1: float = 1.0
    weight_iou: float = 1.0
    weight_actionness: float = 1.0
    weight_saliency: float = 0.1
    weight_align_video: float = 0.1
    weight_align_layer: float = 0.1
    # Terms not computed at all (Table E ablations): names from TERMS, or "align" for both.
    disabled: list[str] = field(default_factory=list)
    # Deep supervision: cls / l1 / iou also on every ``aux_outputs`` level (Eq. 13) and on the
    # encoder proposals ``enc_outputs`` when the model returns them.
    aux_loss: bool = True
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    # "num_queries": mean over the M queries and the batch, as Eq. 17 writes it (default);
    # "num_spans": sum over queries / #GT spans in the batch (DETR family; with M = 30 and
    # 1-3 GT spans per query it weighs the term M / #GT = 10-30x more per sample).
    cls_normalization: Literal["num_queries", "num_spans"] = "num_queries"
    iou_type: Literal["iou", "giou"] = "iou"  # Eq. 19 uses plain IoU
    saliency_temperature: float = 0.07
    # Positive clips drawn per sample for the saliency InfoNCE; 0 = every positive clip.
    saliency_positives: int = 1
    align_temperature: float = 0.07
    # Video-level alignment (C.3.1): the negatives of clip j are clip j of the other samples.
    # Two queries of one video share V^l, so that "negative" is a copy of the positive: "mask"
    # (default) leaves out samples of the same video (targets["video_ids"]); "keep" is the
    # literal form.
    align_same_video: Literal["mask", "keep"] = "mask"
    cost_cls: float = 2.0
    cost_l1: float = 5.0
    cost_iou: float = 2.0
    cost_iou_type: Literal["iou", "giou"] = "giou"
    # Hungarian solver: "auto" = scipy on CPU, the batched torch solver (no host sync) on GPU.
    matcher_solver: Literal["auto", "scipy", "torch"] = "auto"

    def __post_init__(self) -> None:
        known = set(TERMS) | set(TERM_GROUPS)
        unknown = [d for d in self.disabled if d not in known]
        if unknown:
            raise ConfigError(f"disabled: unknown loss term(s) {unknown}; valid: {sorted(known)}")
        for term in TERMS:
            if getattr(self, f"weight_{term}") < 0:
                raise ConfigError(f"weight_{term}: must be >= 0")
        for name in ("saliency_temperature", "align_temperature"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0")
        if self.saliency_positives < 0:
            raise ConfigError("saliency_positives: must be >= 0 (0 = all positive clips)")

    def weight_dict(self) -> dict[str, float]:
        """``{term: weight}`` for every term that is computed (on and with weight > 0)."""
        off = {t for d in self.disabled for t in TERM_GROUPS.get(d, (d,))}
        weights = {t: float(getattr(self, f"weight_{t}")) for t in TERMS}
        return {t: w for t, w in weights.items() if t not in off and w > 0}

    def build_matcher(self) -> HungarianMatcher:
        """The matcher; with ``cls`` disabled (Table E) its class cost is dropped too, since
        the class head is then untrained and would only add noise to the assignment."""
        return HungarianMatcher(
            cost_cls=0.0 if "cls" not in self.weight_dict() else self.cost_cls,
            cost_l1=self.cost_l1,
            cost_iou=self.cost_iou,
            iou_type=self.cost_iou_type,
            focal_alpha=self.focal_alpha,
            focal_gamma=self.focal_gamma,
            solver=self.matcher_solver,
        )


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Elementwise binary focal loss (Eq. 17, both classes), same shape as ``logits``.

    ``FL = -a_t (1 - p_t)^gamma log(p_t)`` with ``p_t = p`` for target 1 and ``1 - p`` for 0;
    ``a_t = alpha`` for target 1 and ``1 - alpha`` for 0 (``alpha < 0`` disables weighting).
    """
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t).pow(gamma)
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def masked_info_nce(logits: Tensor, candidates: Tensor, positive: Tensor) -> Tensor:
    """InfoNCE over the last dim, restricted to ``candidates``: ``-log softmax(logits)[positive]``.

    Args:
        logits: ``(..., C)`` similarities already divided by the temperature.
        candidates: ``(..., C)`` bool, which entries enter the softmax (the positive must be one).
        positive: ``(...)`` int64 index of the positive entry.

    Returns:
        ``(...)`` loss per anchor (0 for an anchor without any negative).
    """
    lse = logits.masked_fill(~candidates, _MASKED_LOGIT).logsumexp(-1)
    return lse - logits.gather(-1, positive.unsqueeze(-1)).squeeze(-1)


def _reduce_num_spans(num: int | Tensor, device: torch.device) -> Tensor:
    """#GT spans, averaged over DDP ranks so that every rank uses the same normalizer.

    A device tensor stays on the device (no host sync)."""
    total = torch.as_tensor(num, device=device).float()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(total)
        total = total / dist.get_world_size()
    return total.clamp(min=1.0)


def padded_target_spans(
    targets: Mapping[str, Any], gt_list: Sequence[Tensor], device: torch.device
) -> tuple[Tensor, Tensor]:
    """``(B, N, 2)`` padded GT spans and their ``(B, N)`` mask: ``targets["spans_padded"]`` /
    ``["spans_mask"]`` when the collate made them (moved with the batch, no per-step host
    work), else padded here from the list."""
    if "spans_padded" in targets and "spans_mask" in targets:
        return targets["spans_padded"].to(device).float(), targets["spans_mask"].to(device).bool()
    return pad_spans(list(gt_list), device=device)


def _require(mapping: Mapping[str, Any], key: str, where: str, term: str) -> Any:
    if key not in mapping:
        raise CriterionInputError(
            f"SDSTCriterion: {where} lack {key!r}, needed by loss term {term!r} "
            f"(switch it off with loss.disabled=[{term}])"
        )
    return mapping[key]


class SDSTCriterion(nn.Module):
    """All SDST losses.

    Args:
        cfg: weights, switches and hyper-parameters.
        matcher: assignment module (default: ``cfg.build_matcher()``).

    ``forward(outputs, targets)``:
        outputs (see ``SDST.forward``): ``pred_logits`` ``(B, M)``; ``pred_spans`` ``(B, M, 2)``
        normalized (center, width); ``pred_actionness`` ``(B, M)``; ``saliency`` ``(B, T)``;
        ``aux_outputs``: list of ``{pred_logits, pred_spans}``; ``video_levels``
        ``(B, K, T, F)``; ``text_pooled`` ``(B, K, F)``; ``video_mask`` ``(B, T)`` bool.
        targets: ``spans``: ``B`` tensors ``(N_i, 2)`` normalized (center, width), ``N_i``
        may be 0; ``saliency``: ``(B, T)`` float, > 0 on relevant clips; ``video_ids``
        (optional) ``(B,)`` int64, equal for queries of the same video (``collate_grounding``
        sets it; without it every sample counts as its own video).

    Returns:
        ``{"loss_<term>[_<aux level>]": weighted scalar, ..., "loss": sum}``.
    """

    def __init__(self, cfg: LossConfig | None = None, matcher: HungarianMatcher | None = None):
        super().__init__()
        self.cfg = cfg if cfg is not None else LossConfig()
        self.matcher = matcher if matcher is not None else self.cfg.build_matcher()
        self.weight_dict = self.cfg.weight_dict()

    def extra_repr(self) -> str:
        return f"weights={self.weight_dict}"

    def forward(self, outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> dict[str, Tensor]:
        weights = self.weight_dict
        raw: dict[str, Tensor] = {}
        if any(t in weights for t in MATCHED_TERMS):
            raw.update(self.matched_losses(outputs, targets))
        if "actionness" in weights:
            raw["loss_actionness"] = self.loss_actionness(outputs, targets)
        if "saliency" in weights:
            raw["loss_saliency"] = self.loss_saliency(outputs, targets)
        if "align_video" in weights or "align_layer" in weights:
            raw.update(self.alignment_losses(outputs, targets))
        losses = {k: v * weights[_term_of(k)] for k, v in raw.items()}
        if not losses:
            raise ConfigError("loss: every term is disabled or has weight 0; nothing to train")
        losses["loss"] = torch.stack(list(losses.values())).sum()
        return losses

    # --- moment retrieval: Hungarian-matched terms at every level (Eq. 13, 17-19) -------------

    def matched_losses(
        self, outputs: Mapping[str, Any], targets: Mapping[str, Any]
    ) -> dict[str, Tensor]:
        """Unweighted ``loss_cls`` / ``loss_l1`` / ``loss_iou`` for the final and aux levels."""
        cfg, weights = self.cfg, self.weight_dict
        levels: list[Mapping[str, Any]] = [outputs]
        suffixes = [""]
        if cfg.aux_loss:
            aux = list(outputs.get("aux_outputs") or [])
            levels += aux
            suffixes += [f"_{i}" for i in range(len(aux))]
            if outputs.get("enc_outputs") is not None:  # encoder proposals (two-stage init)
                levels.append(outputs["enc_outputs"])
                suffixes.append("_enc")
        logits = torch.stack([lvl["pred_logits"] for lvl in levels]).float()  # (L, B, M)
        spans = torch.stack([lvl["pred_spans"] for lvl in levels]).float()  # (L, B, M, 2)
        batch = logits.shape[1]
        first_term = next(t for t in MATCHED_TERMS if t in weights)
        gt_list: Sequence[Tensor] = _require(targets, "spans", "targets", first_term)
        if len(gt_list) != batch:
            raise CriterionInputError(
                f"SDSTCriterion: targets['spans'] has {len(gt_list)} entries for a batch of {batch}"
            )
        gt, gt_mask = padded_target_spans(targets, gt_list, logits.device)
        sizes = [int(s.shape[0]) for s in gt_list]  # host ints from shapes: no device sync
        # (L, B, N): the query matched to each GT span, -1 for padding / unmatched spans.
        assign = self.matcher.match_dense(logits.detach(), spans.detach(), gt, gt_mask, sizes)
        matched = (assign >= 0).to(logits.dtype)
        q = assign.clamp(min=0)
        num_spans = _reduce_num_spans(gt_mask.sum(), logits.device)

        per_level: dict[str, Tensor] = {}
        if "cls" in weights:
            # Matched queries are distinct within a (level, sample): the sum is 0 or 1.
            target = torch.zeros_like(logits).scatter_add_(2, q, matched)
            focal = sigmoid_focal_loss(logits, target, cfg.focal_alpha, cfg.focal_gamma)
            if cfg.cls_normalization == "num_spans":
                per_level["cls"] = focal.sum((1, 2)) / num_spans  # Eq. 17, DETR normalizer
            else:
                per_level["cls"] = focal.mean((1, 2))  # Eq. 17 as written: 1/M per sample
        # (L, B, N, 2) matched pairs of all levels; unmatched slots weigh 0.
        src = spans.gather(2, q.unsqueeze(-1).expand(-1, -1, -1, 2))
        tgt = gt.unsqueeze(0).expand_as(src)
        if "l1" in weights:
            l1 = (src - tgt).abs().sum(-1)  # Eq. 18
            per_level["l1"] = (l1 * matched).sum((1, 2)) / num_spans
        if "iou" in weights:
            iou_fn = (
                generalized_temporal_iou_elementwise
                if cfg.iou_type == "giou"
                else temporal_iou_elementwise
            )
            iou_loss = 1 - iou_fn(span_cxw_to_xx(src), span_cxw_to_xx(tgt))  # Eq. 19
            per_level["iou"] = (iou_loss * matched).sum((1, 2)) / num_spans
        return {
            f"loss_{term}{suffix}": values[i]
            for term, values in per_level.items()
            for i, suffix in enumerate(suffixes)
        }

    def loss_actionness(self, outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> Tensor:
        """Eq. 20: L1 between ``pred_actionness`` and each query's max IoU with any GT span."""
        pred = _require(outputs, "pred_actionness", "outputs", "actionness").float()  # (B, M)
        spans = outputs["pred_spans"].detach().float()
        gt_list = _require(targets, "spans", "targets", "actionness")
        gt, gt_mask = padded_target_spans(targets, gt_list, pred.device)
        target = torch.zeros_like(pred)
        if gt.shape[1]:
            iou = temporal_iou(span_cxw_to_xx(spans), span_cxw_to_xx(gt))  # (B, M, N)
            # IoU >= 0, so zero-filled padding never wins the max; a sample without GT -> 0.
            target = iou.masked_fill(~gt_mask.unsqueeze(1), 0.0).amax(-1)
        return (pred - target).abs().mean()

    # --- highlight detection (Eq. 12, 16) ------------------------------------------------------

    def loss_saliency(self, outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> Tensor:
        """Sampled InfoNCE ranking of per-clip saliency (Eq. 12, C.1).

        For each sample, ``saliency_positives`` anchor clips are drawn uniformly (torch RNG)
        among valid clips with saliency > 0; each anchor is contrasted against the valid clips
        of strictly lower GT saliency. Samples without a positive clip contribute nothing.
        """
        scores = _require(outputs, "saliency", "outputs", "saliency").float()  # (B, T)
        valid = _require(outputs, "video_mask", "outputs", "saliency").bool()
        sal = _require(targets, "saliency", "targets", "saliency").to(scores.device).float()
        _check_clip_shapes(scores, valid, sal)
        logits = (
            torch.where(valid, scores, torch.zeros_like(scores)) / self.cfg.saliency_temperature
        )
        positive = valid & (sal > 0)
        num_clips = scores.shape[1]
        if self.cfg.saliency_positives == 0:
            anchors = torch.arange(num_clips, device=scores.device).expand_as(scores)
            chosen = positive
        else:
            draw = torch.rand(scores.shape, device=scores.device).masked_fill(~positive, -1.0)
            top, anchors = draw.topk(min(self.cfg.saliency_positives, num_clips), dim=-1)
            chosen = top >= 0  # (B, P): fewer positives than draws -> some draws unused
        anchor_sal = sal.gather(1, anchors)  # (B, P)
        # (B, P, T); a comparison, not F.one_hot, which reads the index range back to the host
        is_anchor = anchors.unsqueeze(-1) == torch.arange(num_clips, device=anchors.device)
        negatives = valid.unsqueeze(1) & (sal.unsqueeze(1) < anchor_sal.unsqueeze(-1))
        per_anchor = masked_info_nce(
            logits.unsqueeze(1).expand(-1, anchors.shape[1], -1), negatives | is_anchor, anchors
        )
        w = chosen.float()
        return (per_anchor * w).sum() / w.sum().clamp(min=1.0)

    # --- alignment (C.3, Eq. 21-22) ------------------------------------------------------------

    def alignment_losses(
        self, outputs: Mapping[str, Any], targets: Mapping[str, Any]
    ) -> dict[str, Tensor]:
        """Unweighted ``loss_align_video`` (Eq. 21) and ``loss_align_layer`` (Eq. 22).

        Anchors are the positive (valid, saliency > 0) clips ``j`` of each sample ``b`` at each
        level ``l``, with text ``T^pool_{l,b}``; the positive pair is ``(V^l_{b,j}, T^pool_{l,b})``.
        Video-level negatives: clip ``j`` of the other samples (where it exists) at level ``l``,
        except samples of the same video (``targets["video_ids"]``) unless
        ``align_same_video="keep"``: their clip ``j`` is the positive itself.
        Layer-wise negatives: clip ``j`` of sample ``b`` at the other levels ``l' != l``.
        Averaged over anchors and levels; cosine similarity / ``align_temperature``.
        """
        weights = self.weight_dict
        term = "align_video" if "align_video" in weights else "align_layer"
        video = _require(outputs, "video_levels", "outputs", term).float()  # (B, K, T, F)
        text = _require(outputs, "text_pooled", "outputs", term).float()  # (B, K, F)
        valid = _require(outputs, "video_mask", "outputs", term).bool()  # (B, T)
        sal = _require(targets, "saliency", "targets", term).to(video.device).float()
        _check_clip_shapes(video[:, 0, :, 0], valid, sal)
        batch, num_levels, num_clips, _ = video.shape
        positive = valid & (sal > 0)  # (B, T) anchors
        denom = positive.sum().float().clamp(min=1.0) * num_levels
        text = F.normalize(text, dim=-1)
        # One batched matmul of every clip V^k_{b,t} against the texts both terms need (the
        # (B, K, T, F) video is the large tensor: read it once): the level-k texts of all
        # samples c (video-level) and the texts of its own sample b at all levels j (layer-wise).
        rhs = []
        if "align_video" in weights:
            rhs.append(text.transpose(0, 1).unsqueeze(0).expand(batch, -1, -1, -1))  # [b,k,c]
        if "align_layer" in weights:
            rhs.append(text.unsqueeze(1).expand(-1, num_levels, -1, -1))  # [b,k,j]
        dots = torch.matmul(video, torch.cat(rhs, dim=2).transpose(-1, -2))  # (B, K, T, C+K)
        # Cosine = dot / (|v| |t|): scaling the small similarity tensor by 1 / |v| is cheaper
        # than normalizing (and back-propagating through) the whole video tensor.
        inv_v = 1.0 / (_row_norm(video).clamp(min=1e-6) * self.cfg.align_temperature)
        sims = (dots * inv_v.unsqueeze(-1)).split([r.shape[2] for r in rhs], dim=-1)
        out: dict[str, Tensor] = {}
        if "align_video" in weights:
            # sim[b, k, t, c] = cos(V^k_{b,t}, T^pool_{k,c}) / tau  -> (K, T, C, B): the softmax
            # of text c (anchor clip t) runs over the samples b that have a clip t.
            sim = sims[0].permute(1, 2, 3, 0)
            cand = valid.t().reshape(1, num_clips, 1, batch).expand_as(sim)
            same = _same_video_pairs(targets, batch, video.device)
            if same is not None and self.cfg.align_same_video == "mask":
                cand = cand & ~same.reshape(1, 1, batch, batch)
            own = torch.arange(batch, device=video.device).reshape(1, 1, batch)
            per_anchor = masked_info_nce(sim, cand, own.expand(sim.shape[:3]))  # (K, T, C)
            out["loss_align_video"] = (per_anchor * positive.t().float()).sum() / denom
        if "align_layer" in weights:
            # sim[b, k, t, j] = cos(V^k_{b,t}, T^pool_{j,b}) / tau  -> (B, T, J, K): the softmax
            # of text level j (anchor clip t) runs over the video levels k.
            sim = sims[-1].permute(0, 2, 3, 1)
            own = torch.arange(num_levels, device=video.device).expand(sim.shape[:3])
            per_anchor = F.cross_entropy(
                sim.reshape(-1, num_levels), own.reshape(-1), reduction="none"
            ).view(batch, num_clips, num_levels)
            out["loss_align_layer"] = (per_anchor * positive.unsqueeze(-1).float()).sum() / denom
        return out


class _RowNorm(torch.autograd.Function):
    """``||x||_2`` over the last dim with a one-pass backward ``g / ||x|| * x``.

    Autograd's generic norm backward takes several full passes (division, zero-norm masking)
    over the large ``(B, K, T, F)`` video tensor; this one takes a single multiply.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1)
        ctx.save_for_backward(x, norm)
        return norm

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        x, norm = ctx.saved_tensors
        # A zero row has no direction: its gradient is 0 (the caller clamps the norm anyway).
        scale = torch.where(norm > 0, grad / norm.clamp(min=1e-12), torch.zeros_like(grad))
        return x * scale.unsqueeze(-1)


def _row_norm(x: Tensor) -> Tensor:
    return _RowNorm.apply(x)


def _same_video_pairs(
    targets: Mapping[str, Any], batch: int, device: torch.device
) -> Tensor | None:
    """``(B, B)`` bool: ``[c, b]`` True when samples ``c != b`` show the same video; None when
    ``targets`` has no ``video_ids`` or no two samples share a video."""
    ids = targets.get("video_ids")
    if ids is None:
        return None
    ids = torch.as_tensor(ids, device=device)
    if ids.shape != (batch,):
        raise CriterionInputError(
            f"SDSTCriterion: targets['video_ids'] has shape {tuple(ids.shape)}, expected ({batch},)"
        )
    same = ids.unsqueeze(1) == ids.unsqueeze(0)
    same.fill_diagonal_(False)
    return same


def _term_of(key: str) -> str:
    """``loss_cls_2`` -> ``cls``; ``loss_align_video`` -> ``align_video``."""
    name = key.removeprefix("loss_")
    if name in TERMS:
        return name
    return name.rsplit("_", 1)[0]


def _check_clip_shapes(scores: Tensor, valid: Tensor, sal: Tensor) -> None:
    if not (scores.shape == valid.shape == sal.shape):
        raise CriterionInputError(
            "SDSTCriterion: clip axes disagree: outputs (B, T) "
            f"{tuple(scores.shape)}, video_mask {tuple(valid.shape)}, "
            f"targets['saliency'] {tuple(sal.shape)}"
        )


__all__ = [
    "TERMS",
    "CriterionInputError",
    "LossConfig",
    "SDSTCriterion",
    "masked_info_nce",
    "sigmoid_focal_loss",
]
