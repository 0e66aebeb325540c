"""Multi-head attention and PostNorm residual Transformer blocks (with DropPath).

Every block computes ``x = LayerNorm(x + DropPath(f(x)))`` (PostNorm, Table A). Attention
projections use Xavier init, feed-forward layers Kaiming init.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sidetune.nn.drop_path import DropPath
from sidetune.nn.dropout import Dropout
from sidetune.nn.fast import fast_paths
from sidetune.nn.linear import Linear, linear


def safe_key_mask(mask: Tensor) -> Tensor:
    """Return ``mask`` (B, S) with rows that have no valid key fully opened.

    A query with nothing to attend to would otherwise produce NaN; such rows carry no
    information anyway (their output is arbitrary but finite).
    """
    empty = ~mask.any(dim=-1, keepdim=True)
    return mask | empty


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention with separate q/k/v/out projections (Eq. 24-25).

    Shapes: query ``(B, Nq, dim)``, key/value ``(B, Nk, dim)``, ``key_mask`` ``(B, Nk)`` bool
    True = attend -> ``(B, Nq, dim)``.

    Fast path (:func:`sidetune.nn.fast.fast_paths`): projections that read the same tensor run
    as one matmul with the concatenated weights (``key is value``: one K|V matmul; ``query is
    key``: one Q|K matmul; all three: one Q|K|V matmul). The parameters stay the separate
    ``q_proj`` / ``k_proj`` / ``v_proj`` (checkpoints and init are unchanged); only the number
    of matmuls, bias reductions and gradient accumulations drops. Tests pin that the plain path
    (``plain_paths()``) gives the same outputs and gradients.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.dropout = dim, num_heads, dropout
        self.q_proj = Linear(dim, dim)
        self.k_proj = Linear(dim, dim)
        self.v_proj = Linear(dim, dim)
        self.out_proj = Linear(dim, dim)
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.dim // self.num_heads).transpose(1, 2)

    def _project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if not fast_paths() or (query is not key and key is not value):
            return self.q_proj(query), self.k_proj(key), self.v_proj(value)
        if query is key and key is value:
            q, k, v = _fused_linear(query, (self.q_proj, self.k_proj, self.v_proj))
            return q, k, v
        if query is key:
            q, k = _fused_linear(query, (self.q_proj, self.k_proj))
            return q, k, self.v_proj(value)
        k, v = _fused_linear(key, (self.k_proj, self.v_proj))
        return self.q_proj(query), k, v

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, key_mask: Tensor | None = None
    ) -> Tensor:
        b, nq, _ = query.shape
        q, k, v = (self._heads(x) for x in self._project(query, key, value))
        attn_mask = None if key_mask is None else safe_key_mask(key_mask)[:, None, None, :]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, self.dim))


def _fused_linear(x: Tensor, layers: tuple[nn.Linear, ...]) -> tuple[Tensor, ...]:
    """``tuple(layer(x) for layer in layers)`` as one matmul with the stacked weights."""
    weight = torch.cat([lin.weight for lin in layers])
    bias = torch.cat([lin.bias for lin in layers])
    return linear(x, weight, bias).split([lin.out_features for lin in layers], dim=-1)


def residual(x: Tensor, branch: Tensor, drop_path: DropPath) -> Tensor:
    """``x + drop_path(branch)`` with the DropPath scale fused into the add (one op, not two)."""
    scale = drop_path.scale(branch)
    if scale is None:
        return x + branch
    return torch.addcmul(x, branch, scale) if fast_paths() else x + branch * scale


class AttentionBlock(nn.Module):
    """PostNorm residual attention block.

    ``x = LN(x + DropPath(MHA(x + query_pos, mem + key_pos, mem, key_mask)))``; self-attention
    when ``memory`` is None (then ``key_pos`` defaults to ``query_pos``).
    Shapes: x ``(B, N, dim)``, memory ``(B, S, dim)``, key_mask ``(B, S)`` (or ``(B, N)``).
    """

    def __init__(
        self, dim: int, num_heads: int, dropout: float = 0.0, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, num_heads, dropout)
        self.drop_path = DropPath(drop_path)
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        key_mask: Tensor | None = None,
        query_pos: Tensor | None = None,
        key_pos: Tensor | None = None,
    ) -> Tensor:
        q = x if query_pos is None else x + query_pos
        if memory is None:
            memory = x
            k = q if key_pos is None else x + key_pos
        else:
            k = memory if key_pos is None else memory + key_pos
        out = self.attn(q, k, memory, key_mask)
        return self.norm(residual(x, out, self.drop_path))


class FeedForwardBlock(nn.Module):
    """PostNorm residual point-wise feed-forward network (PFFN), ReLU, ratio x hidden.

    ``x = LN(x + DropPath(W2 ReLU(W1 x)))``; shapes ``(..., dim) -> (..., dim)``.
    """

    def __init__(
        self, dim: int, ratio: int = 4, dropout: float = 0.0, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.fc1 = Linear(dim, dim * ratio)
        self.fc2 = Linear(dim * ratio, dim)
        self.dropout = Dropout(dropout) if dropout > 0 else nn.Identity()
        self.drop_path = DropPath(drop_path)
        self.norm = nn.LayerNorm(dim)
        for lin in (self.fc1, self.fc2):
            nn.init.kaiming_uniform_(lin.weight, nonlinearity="relu")
            nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc2(self.dropout(torch.relu(self.fc1(x))))
        return self.norm(residual(x, h, self.drop_path))
