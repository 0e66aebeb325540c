"""Prediction heads: classification, span regression, actionness (RoI pooling), saliency (Eq. 16)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sidetune.nn.attention import safe_key_mask
from sidetune.nn.deformable_1d import sample_1d
from sidetune.nn.linear import Linear
from sidetune.nn.mlp import MLP


class ClassificationHead(nn.Module):
    """1-layer head ``H -> logit`` (p = sigmoid), focal-loss prior init. ``(B, M, F) -> (B, M)``."""

    def __init__(self, dim: int, prior_prob: float = 0.01) -> None:
        super().__init__()
        self.linear = Linear(dim, 1)
        nn.init.constant_(self.linear.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, latent: Tensor) -> Tensor:
        return self.linear(latent).squeeze(-1)


class SpanRegressionHead(nn.Module):
    """3-layer MLP ``H -> delta`` in inverse-sigmoid space. ``(B, M, F) -> (B, M, 2)``.

    The last layer is zero-initialised so references start exactly at ``R^0`` (DAB-DETR).
    """

    def __init__(self, dim: int, num_layers: int = 3) -> None:
        super().__init__()
        self.mlp = MLP(dim, dim, 2, num_layers)
        nn.init.zeros_(self.mlp.last.weight)
        nn.init.zeros_(self.mlp.last.bias)

    def forward(self, latent: Tensor) -> Tensor:
        return self.mlp(latent)


def roi_pool_1d(
    dense: Tensor, spans: Tensor, mask: Tensor, roi_size: int = 16, roi_scale: float = 0.0
) -> Tensor:
    """Linear-interpolation RoI pooling of the dense embedding inside each span.

    ``roi_size`` points at the bin centres of ``[c - w'/2, c + w'/2]`` with
    ``w' = w (1 + 2 roi_scale)`` (``roi_scale`` extends each side by that fraction of the
    width; Table A uses 0), clamped to the valid clips.
    Shapes: dense ``(B, T, F)``, spans ``(B, M, 2)``, mask ``(B, T)`` -> ``(B, M, roi_size, F)``.
    """
    b, m, _ = spans.shape
    frac = (torch.arange(roi_size, device=spans.device, dtype=spans.dtype) + 0.5) / roi_size - 0.5
    width = spans[..., 1:2] * (1.0 + 2.0 * roi_scale)
    u = spans[..., 0:1] + width * frac  # (B, M, R)
    return sample_1d(dense, u.reshape(b, m * roi_size), mask, padding="border").view(
        b, m, roi_size, dense.shape[-1]
    )


class ActionnessHead(nn.Module):
    """RoI features of each predicted span -> 3-layer MLP -> predicted max-IoU in [0, 1].

    The spans are detached: the head estimates the quality of the given spans and must not
    move them. Shapes: dense ``(B, T, F)``, spans ``(B, M, 2)`` -> ``(B, M)``.
    """

    def __init__(
        self, dim: int, roi_size: int = 16, roi_scale: float = 0.0, num_layers: int = 3
    ) -> None:
        super().__init__()
        self.roi_size, self.roi_scale = roi_size, roi_scale
        self.mlp = MLP(roi_size * dim, dim, 1, num_layers)

    def forward(self, dense: Tensor, spans: Tensor, mask: Tensor) -> Tensor:
        roi = roi_pool_1d(dense, spans.detach(), mask, self.roi_size, self.roi_scale)
        return torch.sigmoid(self.mlp(roi.flatten(2))).squeeze(-1)


class AdaptiveTextPooling(nn.Module):
    """Learnable adaptive pooling ``T -> T^pool`` (Sec. C.1): attention pooling with a learned
    scorer over the valid tokens. Shapes: ``(..., L, F), (..., L) -> (..., F)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = Linear(dim, 1)
        nn.init.zeros_(self.score.weight)  # starts as a masked mean
        nn.init.zeros_(self.score.bias)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        logits = self.score(tokens).squeeze(-1).masked_fill(~safe_key_mask(mask), float("-inf"))
        weights = logits.softmax(dim=-1)
        return (weights.unsqueeze(-1) * tokens).sum(dim=-2)


def saliency_scores(dense: Tensor, text_pooled: Tensor) -> Tensor:
    """Eq. 16: cosine similarity of every clip of ``D^K`` with ``T^pool``.

    Shapes: dense ``(B, T, F)``, text_pooled ``(B, F)`` -> ``(B, T)``.
    """
    return F.cosine_similarity(dense, text_pooled.unsqueeze(1), dim=-1, eps=1e-6)
