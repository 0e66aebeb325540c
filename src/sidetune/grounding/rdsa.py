"""Attention from the recurrent decoder queries to the dense video stream (Table 5).

* :class:`RDSA` - Reference-based Deformable Self-Attention (Eq. 10-11, the paper's method):
  offsets and weights are predicted from the dense embedding itself, sampled at the left /
  centre / right of each reference after a small context CNN.
* :class:`DeformableCrossAttention` - the Deformable CA baseline (Eq. 7-9): offsets and weights
  from the decoder latent ``H`` (+ its reference position embedding).
* :class:`StandardCrossAttention` - ordinary multi-head cross-attention ``H -> D``.

All three share one call signature and are wrapped by :class:`VideoAttentionBlock` (PostNorm
residual + DropPath), selected by :func:`build_video_attention`.

Sampling convention (Eq. 9): a sampling point ``p`` of head ``h`` sits at
``c + (w / 2) * offset[h, p]`` (normalized to each sample's valid timeline), i.e. offsets are in
units of the *half* width so that -1 / +1 are the reference's left / right boundaries, as in the
paper's Fig. 4 discussion.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from sidetune.nn.attention import MultiHeadAttention, residual
from sidetune.nn.deformable_1d import at_least_float32, deformable_aggregate_1d, sample_1d
from sidetune.nn.drop_path import DropPath
from sidetune.nn.linear import Linear
from sidetune.nn.mlp import MLP

AttentionKind = Literal["rdsa", "deformable_ca", "standard_ca"]
SamplingPoints = Literal["c", "lr", "lcr"]


def head_offset_bias(num_heads: int, num_points: int, spread: float = 0.25) -> Tensor:
    """Initial offsets ``(H, P)`` so that heads look at different parts of the reference.

    Heads 0, 1, 2 start at the left boundary (-1), the right boundary (+1) and the centre (0)
    (the heads analysed in Fig. 4 / Fig. A); further heads are spread evenly over
    ``[-1.5, 1.5]`` (inside and just outside the span). The P points of a head are spaced by
    ``spread`` around its base location.
    """
    anchors = [-1.0, 1.0, 0.0]
    bases = torch.tensor(anchors[:num_heads], dtype=torch.float32)
    if num_heads > 3:
        bases = torch.cat([bases, torch.linspace(-1.5, 1.5, num_heads - 3)])
    points = (torch.arange(num_points, dtype=torch.float32) - (num_points - 1) / 2) * spread
    return bases[:, None] + points[None, :]


class DeformableSampler(nn.Module):
    """Offset and weight predictors ``G_Delta``, ``G_A`` plus the deformable aggregation (Eq. 9).

    Shapes: query ``(B, M, Q)``, refs ``(B, M, 2)`` (centre, width), dense ``(B, T, F)``,
    mask ``(B, T)`` -> ``(B, M, F)``.
    """

    def __init__(self, dim: int, num_heads: int, num_points: int, query_dim: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.num_points = num_heads, num_points
        self.offsets = Linear(query_dim, num_heads * num_points)
        self.weights = Linear(query_dim, num_heads * num_points)
        self.value_proj = Linear(dim, dim)
        self.out_proj = Linear(dim, dim)
        # Deformable-DETR style: offsets start exactly at their head's base location and
        # all points start equally weighted; the network learns to move them.
        nn.init.zeros_(self.offsets.weight)
        with torch.no_grad():
            self.offsets.bias.copy_(head_offset_bias(num_heads, num_points).flatten())
        nn.init.zeros_(self.weights.weight)
        nn.init.zeros_(self.weights.bias)
        for lin in (self.value_proj, self.out_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def sampling(self, query: Tensor, refs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(locations, weights, offsets)``, each ``(B, M, H, P)`` (Eq. 8 / Eq. 11)."""
        b, m, _ = query.shape
        # float32 under autocast too (see at_least_float32)
        offsets = at_least_float32(self.offsets(query)).view(b, m, self.num_heads, self.num_points)
        weights = at_least_float32(self.weights(query)).view(b, m, self.num_heads, self.num_points)
        weights = weights.softmax(-1)
        centre, width = refs[..., 0, None, None], refs[..., 1, None, None]
        locations = centre + 0.5 * width * offsets  # Eq. 9: c + w (.) Delta, Delta in half-widths
        return locations, weights, offsets

    def forward(self, query: Tensor, refs: Tensor, dense: Tensor, mask: Tensor) -> Tensor:
        b, t, f = dense.shape
        value = self.value_proj(dense).view(b, t, self.num_heads, f // self.num_heads)
        locations, weights, _ = self.sampling(query, refs)
        out = deformable_aggregate_1d(value.transpose(1, 2), locations, weights, mask)  # Eq. 9
        return self.out_proj(out)


class ContextCNN(nn.Module):
    """Two ``Conv1d(k=3) -> LayerNorm -> ReLU`` layers giving each clip local context (Eq. 10).

    Padded clips are zeroed before every convolution so a padded batch sees exactly what a
    lone sample sees (zero padding at its end). Shapes: ``(B, T, F), (B, T) -> (B, T, F)``.
    """

    def __init__(self, dim: int, hidden_dim: int | None = None, kernel_size: int = 3) -> None:
        super().__init__()
        hidden = hidden_dim or dim
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(dim, hidden, kernel_size, padding=pad)
        self.norm1 = nn.LayerNorm(hidden)
        self.conv2 = nn.Conv1d(hidden, dim, kernel_size, padding=pad)
        self.norm2 = nn.LayerNorm(dim)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_uniform_(conv.weight, nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        keep = mask.unsqueeze(-1).to(x.dtype)
        x = x * keep
        x = torch.relu(self.norm1(self.conv1(x.transpose(1, 2)).transpose(1, 2))) * keep
        return torch.relu(self.norm2(self.conv2(x.transpose(1, 2)).transpose(1, 2))) * keep


def reference_points(refs: Tensor, points: SamplingPoints) -> Tensor:
    """Normalized l / c / r positions of each reference: ``(B, M, 2) -> (B, M, len(points))``."""
    centre, width = refs[..., 0], refs[..., 1]
    where = {"l": centre - 0.5 * width, "c": centre, "r": centre + 0.5 * width}
    return torch.stack([where[p] for p in points], dim=-1)


class RDSA(nn.Module):
    """Reference-based Deformable Self-Attention (Eq. 10-11).

    ``X_Q = CNN(D)[l, c, r]`` (``(B, M, 3F)``, linear sampling, border-clamped), projected by an
    MLP to ``query_dim`` (64); linear heads give per-head offsets and weights for P points, then the
    dense values are aggregated at ``c + (w/2) * offset`` (Eq. 9).

    ``use_latent=False`` (default) is Eq. 10-11 as written: the offsets and weights depend on
    ``D`` and ``R`` only. ``use_latent=True`` adds a linear map of the decoder latent ``H`` to
    ``Q_hat``: a hybrid of RDSA and deformable CA (an option, not the paper's module).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        num_points: int = 4,
        query_dim: int = 64,
        points: SamplingPoints = "lcr",
        use_cnn: bool = True,
        use_latent: bool = False,
    ) -> None:
        super().__init__()
        self.points = points
        self.cnn = ContextCNN(dim) if use_cnn else None
        self.query_mlp = MLP(len(points) * dim, dim, query_dim, num_layers=2)  # W_Q^def, Eq. 10
        self.latent_proj = Linear(dim, query_dim) if use_latent else None
        self.sampler = DeformableSampler(dim, num_heads, num_points, query_dim)

    def query(self, latent: Tensor, refs: Tensor, dense: Tensor, mask: Tensor) -> Tensor:
        """The alternative query ``Q_hat`` (Eq. 10): ``(B, M, query_dim)``."""
        b, m, _ = refs.shape
        ctx = self.cnn(dense, mask) if self.cnn is not None else dense
        u = reference_points(refs, self.points)  # (B, M, n)
        x_q = sample_1d(ctx, u.flatten(1), mask, padding="border").reshape(b, m, -1)
        q = self.query_mlp(x_q)
        if self.latent_proj is not None:
            q = q + self.latent_proj(latent)
        return q

    def forward(
        self,
        latent: Tensor,
        refs: Tensor,
        query_pos: Tensor,
        dense: Tensor,
        dense_pos: Tensor,
        mask: Tensor,
    ) -> Tensor:
        return self.sampler(self.query(latent, refs, dense, mask), refs, dense, mask)  # Eq. 11


class DeformableCrossAttention(nn.Module):
    """Deformable CA baseline (Eq. 7-9): offsets/weights from ``H + pos(R)`` only."""

    def __init__(self, dim: int, num_heads: int = 8, num_points: int = 4) -> None:
        super().__init__()
        self.sampler = DeformableSampler(dim, num_heads, num_points, dim)

    def forward(
        self,
        latent: Tensor,
        refs: Tensor,
        query_pos: Tensor,
        dense: Tensor,
        dense_pos: Tensor,
        mask: Tensor,
    ) -> Tensor:
        return self.sampler(latent + query_pos, refs, dense, mask)


class StandardCrossAttention(nn.Module):
    """Standard CA baseline: ``MHA(H + pos(R), D + pos_t, D)`` with the clip padding mask."""

    def __init__(self, dim: int, num_heads: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, num_heads, dropout)

    def forward(
        self,
        latent: Tensor,
        refs: Tensor,
        query_pos: Tensor,
        dense: Tensor,
        dense_pos: Tensor,
        mask: Tensor,
    ) -> Tensor:
        return self.attn(latent + query_pos, dense + dense_pos, dense, mask)


class VideoAttentionBlock(nn.Module):
    """PostNorm residual wrapper: ``H = LN(H + DropPath(core(H, R, ...)))`` (Eq. 6, first half)."""

    def __init__(self, core: nn.Module, dim: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.core = core
        self.drop_path = DropPath(drop_path)
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        latent: Tensor,
        refs: Tensor,
        query_pos: Tensor,
        dense: Tensor,
        dense_pos: Tensor,
        mask: Tensor,
    ) -> Tensor:
        out = self.core(latent, refs, query_pos, dense, dense_pos, mask)
        return self.norm(residual(latent, out, self.drop_path))


def build_video_attention(
    kind: AttentionKind,
    dim: int,
    num_heads: int,
    num_points: int = 4,
    query_dim: int = 64,
    points: SamplingPoints = "lcr",
    use_cnn: bool = True,
    use_latent: bool = False,
    dropout: float = 0.0,
) -> nn.Module:
    """The core module for ``attention`` = ``rdsa`` | ``deformable_ca`` | ``standard_ca``."""
    if kind == "rdsa":
        return RDSA(dim, num_heads, num_points, query_dim, points, use_cnn, use_latent)
    if kind == "deformable_ca":
        return DeformableCrossAttention(dim, num_heads, num_points)
    if kind == "standard_ca":
        return StandardCrossAttention(dim, num_heads, dropout)
    raise ValueError(
        f"unknown attention kind {kind!r}; expected rdsa, deformable_ca or standard_ca"
    )
