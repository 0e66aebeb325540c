"""Dense learning stream D (Eq. 3-4): clip-level refinement of the dense embedding."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sidetune.nn.attention import AttentionBlock, FeedForwardBlock


class LevelGates(nn.Module):
    """The per-level mixing weights ``beta^l in [0, 1]`` of Eq. 3, zero-initialised.

    Parametrised as a *straight-through clamp*: the forward value is ``clamp(theta, 0, 1)`` (so
    beta starts at exactly 0 and never leaves [0, 1]), while the gradient w.r.t. ``theta`` is the
    identity, so a gate pushed against a bound is never stuck there (a plain clamp would zero its
    gradient for good once ``theta < 0``).
    """

    def __init__(self, num_levels: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(num_levels))

    def forward(self) -> Tensor:
        """All betas, ``(K,)``."""
        return self.theta + (self.theta.clamp(0.0, 1.0) - self.theta).detach()


def gated_mix(dense: Tensor, video: Tensor, beta: Tensor) -> Tensor:
    """Eq. 3: ``D := beta D + (1 - beta) V``; shapes ``(B, T, F)`` and a scalar beta."""
    return beta * dense + (1.0 - beta) * video


class DenseStreamLayer(nn.Module):
    """One level of D: Eq. 3 mix, text CA, temporal SA, PFFN (Eq. 4).

    Sinusoidal clip positions are added to the queries and keys of the temporal SA only (the
    text keys carry no clip order; the text tower already encodes token order).

    Returns every intermediate so the sparse stream can be conditioned on any of them
    (Table 6): ``{"post_ca", "post_sa", "post_ffn"}``, each ``(B, T, F)``; ``post_ffn`` is
    ``D^{l+1}``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        ffn_ratio: int = 4,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.cross_attn = AttentionBlock(dim, num_heads, dropout, drop_path)
        self.self_attn = AttentionBlock(dim, num_heads, dropout, drop_path)
        self.ffn = FeedForwardBlock(dim, ffn_ratio, dropout, drop_path)

    def forward(
        self,
        dense: Tensor,
        video: Tensor,
        beta: Tensor,
        text: Tensor,
        text_mask: Tensor,
        video_mask: Tensor,
        pos: Tensor,
    ) -> dict[str, Tensor]:
        """Shapes: dense/video ``(B, T, F)``, text ``(B, L, F)``, masks ``(B, L)`` / ``(B, T)``,
        pos ``(1, T, F)``."""
        d = gated_mix(dense, video, beta)  # Eq. 3
        post_ca = self.cross_attn(d, text, text_mask)  # Eq. 4, CA(D, T, T)
        post_sa = self.self_attn(post_ca, key_mask=video_mask, query_pos=pos)  # Eq. 4, SA
        post_ffn = self.ffn(post_sa)  # Eq. 4, PFFN
        return {"post_ca": post_ca, "post_sa": post_sa, "post_ffn": post_ffn}
