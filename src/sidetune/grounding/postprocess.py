"""Inference post-processing (SDST supplementary C.4): model outputs -> prediction rows.

1. confidence ``C = sqrt(p * actionness)`` per query (Eq. 23), ``p = sigmoid(pred_logits)``
   (``p`` alone or ``actionness`` alone when the other head is switched off, Table E);
2. spans -> ``[start, end]`` clamped to the video duration; windows that are empty after
   clamping (they lie entirely past the end of the video) are dropped;
3. soft-NMS (Gaussian by default) on the confidences, batched over the videos;
4. the ``top_k`` survivors, best first, in seconds, plus one saliency score per clip, in the
   official QVHighlights predictions format.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from sidetune.config import ConfigError
from sidetune.errors import SidetuneError
from sidetune.grounding.span_utils import span_cxw_to_xx, temporal_iou

META_KEYS = ("qid", "vid", "query", "duration", "num_clips", "clip_length")


class PostprocessError(SidetuneError, ValueError):
    """Inconsistent metadata or outputs handed to :func:`postprocess`."""


@dataclass
class PostprocessConfig:
    """``postprocess.*`` keys."""

    # "gaussian": s *= exp(-IoU^2 / sigma); "linear": s *= 1 - IoU where IoU > iou_threshold;
    # "hard": drop windows with IoU > iou_threshold (classic NMS); "none": plain top-k.
    nms: Literal["gaussian", "linear", "hard", "none"] = "gaussian"
    sigma: float = 0.5
    iou_threshold: float = 0.3
    # Windows whose (decayed) score falls below this are not reported.
    score_threshold: float = 0.0
    top_k: int = 10
    # Eq. 23 uses both heads. use_actionness=false ranks by the class probability alone,
    # use_cls=false by the actionness alone. A grounding config sets them from loss.disabled
    # (an untrained head must not enter the ranking; see GroundingConfig).
    use_actionness: bool = True
    use_cls: bool = True
    decimals: int = 4

    def __post_init__(self) -> None:
        if self.sigma <= 0:
            raise ConfigError("sigma: must be > 0")
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ConfigError("iou_threshold: must be in [0, 1]")
        if self.top_k < 1:
            raise ConfigError("top_k: must be >= 1")
        if self.decimals < 0:
            raise ConfigError("decimals: must be >= 0")
        if not (self.use_cls or self.use_actionness):
            raise ConfigError(
                "use_cls and use_actionness are both false: nothing to rank the moments by"
            )


def confidence(pred_logits: Tensor | None, pred_actionness: Tensor | None) -> Tensor:
    """Eq. 23: ``sqrt(sigmoid(logits) * actionness)`` (actionness clamped to [0, 1]).

    With one of the two missing (its head switched off), the other alone: ``sigmoid(logits)``
    or ``actionness``. Shapes ``(B, M)`` -> ``(B, M)``.
    """
    act = pred_actionness.float().clamp(0.0, 1.0) if pred_actionness is not None else None
    if pred_logits is None:
        if act is None:
            raise PostprocessError("confidence needs pred_logits, pred_actionness or both")
        return act
    p = pred_logits.float().sigmoid()
    if act is None:
        return p
    return (p * act).sqrt()


def soft_nms(
    windows: Tensor,
    scores: Tensor,
    top_k: int,
    method: Literal["gaussian", "linear", "hard", "none"] = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.3,
) -> tuple[Tensor, Tensor]:
    """Batched soft-NMS over temporal windows.

    Repeatedly takes the best remaining window and decays the scores of the others by their
    IoU with it. Only the first ``top_k`` picks are needed, so the loop runs ``top_k`` times
    (each step vectorized over the batch and the candidates), not once per candidate.

    Args:
        windows: ``(B, M, 2)`` ``(start, end)`` in any unit.
        scores: ``(B, M)``; ``-inf`` marks a candidate that must never be picked.
        top_k: number of picks.

    Returns:
        ``order`` ``(B, k)`` int64 indices of the picks, best first, and their decayed
        ``scores`` ``(B, k)`` (``-inf`` where a sample ran out of candidates),
        ``k = min(top_k, M)``.
    """
    k = min(top_k, scores.shape[1])
    if method == "none":
        top, order = scores.topk(k, dim=1)
        return order, top
    iou = temporal_iou(windows, windows)  # (B, M, M)
    alive = torch.isfinite(scores)
    current = scores.clone()
    picks, picked_scores = [], []
    for _ in range(k):
        best_score, best = current.max(dim=1)  # (B,)
        picks.append(best)
        picked_scores.append(best_score)
        alive = alive & (torch.arange(scores.shape[1], device=scores.device) != best[:, None])
        overlap = iou.gather(1, best[:, None, None].expand(-1, 1, iou.shape[2])).squeeze(1)
        if method == "gaussian":
            decay = torch.exp(-overlap.square() / sigma)
        elif method == "linear":
            decay = torch.where(overlap > iou_threshold, 1.0 - overlap, torch.ones_like(overlap))
        else:  # hard NMS: an overlapping window is removed, not kept with score 0
            alive = alive & (overlap <= iou_threshold)
            decay = torch.ones_like(overlap)
        current = torch.where(alive, current * decay, torch.full_like(current, -math.inf))
    return torch.stack(picks, dim=1), torch.stack(picked_scores, dim=1)


def _check_metas(metas: Sequence[Mapping[str, Any]], batch: int, num_clips: int) -> None:
    if len(metas) != batch:
        raise PostprocessError(f"postprocess: {len(metas)} metas for a batch of {batch}")
    for i, meta in enumerate(metas):
        missing = [k for k in META_KEYS if k not in meta]
        if missing:
            raise PostprocessError(f"postprocess: metas[{i}] lacks {missing}")
        n = int(meta["num_clips"])
        if not 0 < n <= num_clips:
            raise PostprocessError(
                f"postprocess: metas[{i}] (qid {meta['qid']}) num_clips={n} outside [1, {num_clips}]"
            )
        if float(meta["duration"]) <= 0 or float(meta["clip_length"]) <= 0:
            raise PostprocessError(
                f"postprocess: metas[{i}] (qid {meta['qid']}) needs duration > 0 and clip_length > 0"
            )


@torch.no_grad()
def postprocess(
    outputs: Mapping[str, Any],
    metas: Sequence[Mapping[str, Any]],
    cfg: PostprocessConfig | None = None,
) -> list[dict[str, Any]]:
    """Model outputs -> one official-format prediction row per query.

    Args:
        outputs: ``pred_logits`` ``(B, M)``, ``pred_spans`` ``(B, M, 2)`` normalized
            (center, width) relative to ``num_clips * clip_length`` seconds,
            ``pred_actionness`` ``(B, M)`` (when ``use_actionness``), ``saliency`` ``(B, T)``.
        metas: ``B`` dicts with ``qid, vid, query, duration, num_clips, clip_length``.
        cfg: post-processing parameters.

    Returns:
        ``B`` dicts ``{qid, query, vid, pred_relevant_windows: [[start_s, end_s, score], ...]
        (<= top_k, best first), pred_saliency_scores: [float] * num_clips}``.
    """
    cfg = cfg if cfg is not None else PostprocessConfig()
    logits: Tensor = outputs["pred_logits"]
    batch = logits.shape[0]
    saliency: Tensor = outputs["saliency"]
    _check_metas(metas, batch, saliency.shape[1])
    actionness = None
    if cfg.use_actionness:
        if "pred_actionness" not in outputs:
            raise PostprocessError(
                "postprocess: outputs lack 'pred_actionness' (Eq. 23); "
                "set postprocess.use_actionness=false for a model without it"
            )
        actionness = outputs["pred_actionness"]
    scores = confidence(logits if cfg.use_cls else None, actionness)  # (B, M) Eq. 23

    device = logits.device
    timeline = torch.tensor(
        [float(m["num_clips"]) * float(m["clip_length"]) for m in metas], device=device
    )
    duration = torch.tensor([float(m["duration"]) for m in metas], device=device)
    windows = span_cxw_to_xx(outputs["pred_spans"].float()) * timeline[:, None, None]
    windows = torch.minimum(windows.clamp(min=0.0), duration[:, None, None])
    empty = windows[..., 1] <= windows[..., 0]
    scores = scores.masked_fill(empty, -math.inf)

    order, kept = soft_nms(windows, scores, cfg.top_k, cfg.nms, cfg.sigma, cfg.iou_threshold)
    picked = windows.gather(1, order[..., None].expand(-1, -1, 2))  # (B, k, 2)
    keep = torch.isfinite(kept) & (kept >= cfg.score_threshold)
    table = torch.cat((picked, kept[..., None]), dim=-1)  # (B, k, 3)

    # One device-to-host copy per tensor, then plain Python for the JSON rows.
    table_l = table.cpu().tolist()
    keep_l = keep.cpu().tolist()
    sal_l = saliency.float().cpu().tolist()
    d = cfg.decimals
    rows = []
    for i, meta in enumerate(metas):
        rows.append(
            {
                "qid": meta["qid"],
                "query": meta["query"],
                "vid": meta["vid"],
                "pred_relevant_windows": [
                    [round(s, d), round(e, d), round(c, d)]
                    for (s, e, c), ok in zip(table_l[i], keep_l[i])
                    if ok
                ],
                "pred_saliency_scores": [round(v, d) for v in sal_l[i][: int(meta["num_clips"])]],
            }
        )
    return rows
