"""Sparse learning stream S (Eq. 1, 5-6): recurrent decoder queries and their refinement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from sidetune.nn.attention import AttentionBlock, FeedForwardBlock
from sidetune.nn.deformable_1d import at_least_float32, valid_lengths
from sidetune.nn.linear import Linear
from sidetune.nn.mlp import MLP
from sidetune.nn.position import sine_embed

SPARSE_MODULES = ("ca", "sa", "rdsa", "ffn")
QueryInit = Literal["learned", "pure", "mixed"]


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    x = x.clamp(min=eps, max=1 - eps)
    return torch.log(x / (1 - x))


def refine_references(refs: Tensor, delta: Tensor) -> Tensor:
    """DAB-DETR update ``R' = sigmoid(sigmoid^-1(R) + delta)``: spans stay in (0, 1).

    In float32 even under bf16/fp16 autocast: a bf16 span has ~3 significant digits, i.e. a
    quarter of a clip on a 75-clip timeline, too coarse for the references and sampling."""
    return torch.sigmoid(inverse_sigmoid(at_least_float32(refs)) + at_least_float32(delta))


class RecurrentQueries(nn.Module):
    """Learnable references ``R^0`` (centre, width) and latents ``H^0`` (Eq. 1).

    ``R^0`` is stored as logits (sigmoid keeps it in (0, 1)); centres start spread uniformly
    at random over the timeline, widths uniformly in [0.05, 0.5].
    """

    def __init__(self, num_queries: int, dim: int) -> None:
        super().__init__()
        centre = torch.rand(num_queries)
        width = torch.empty(num_queries).uniform_(0.05, 0.5)
        self.ref_logits = nn.Parameter(inverse_sigmoid(torch.stack([centre, width], dim=-1)))
        self.latent = nn.Parameter(torch.empty(num_queries, dim))
        nn.init.normal_(self.latent, std=0.02)

    def forward(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """``(R^0, H^0)`` expanded to ``(B, M, 2)`` and ``(B, M, F)``."""
        refs = torch.sigmoid(self.ref_logits).unsqueeze(0).expand(batch_size, -1, -1)
        return refs, self.latent.unsqueeze(0).expand(batch_size, -1, -1)


class ReferencePositionEmbedding(nn.Module):
    """Positional query ``pos(R) = MLP(sine(c) || sine(w))`` (DAB-DETR); ``(B, M, 2) -> (B, M, F)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 4:
            raise ValueError(
                f"hidden dim must be divisible by 4 for the reference embedding, got {dim}"
            )
        self.dim = dim
        self.mlp = MLP(dim, dim, dim, num_layers=2)

    def forward(self, refs: Tensor) -> Tensor:
        return self.mlp(sine_embed(refs, self.dim // 2))


class QueryInitializer(nn.Module):
    """DINO-style decoder-query initialisation from the dense memory (Table 5 baselines).

    A score head ranks the valid clips; the top-M clips give proposals (clip centre plus a
    learned refinement of centre and width) that become the initial references (detached,
    as in DINO). ``pure`` also derives the latents from the selected clip features; ``mixed``
    keeps the learned latents ``H^0``. The proposals and their scores are returned as
    ``enc_outputs`` so a criterion can supervise them (otherwise the score head is untrained:
    top-k is not differentiable).

    If a sample has fewer valid clips than queries, the ranked clips are reused cyclically.
    """

    def __init__(self, dim: int, mode: QueryInit, anchor_width: float = 0.1) -> None:
        super().__init__()
        if mode not in ("pure", "mixed"):
            raise ValueError(f"QueryInitializer mode must be 'pure' or 'mixed', got {mode!r}")
        self.mode = mode
        self.anchor_width = anchor_width
        self.score = Linear(dim, 1)
        self.proposal = MLP(dim, dim, 2, num_layers=2)
        nn.init.zeros_(self.proposal.last.weight)
        nn.init.zeros_(self.proposal.last.bias)
        self.content = (
            nn.Sequential(Linear(dim, dim), nn.LayerNorm(dim)) if mode == "pure" else None
        )

    def forward(
        self, memory: Tensor, mask: Tensor, num_queries: int
    ) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        """memory ``(B, T, F)``, mask ``(B, T)`` -> refs ``(B, M, 2)``, latents ``(B, M, F)`` or
        None, ``{"pred_logits": (B, M), "pred_spans": (B, M, 2)}``."""
        f = memory.shape[-1]
        logits = self.score(memory).squeeze(-1)
        ranked = logits.detach().masked_fill(~mask, float("-inf")).argsort(dim=-1, descending=True)
        count = mask.sum(dim=-1, keepdim=True).clamp(min=1)
        slots = torch.arange(num_queries, device=memory.device).unsqueeze(0) % count
        idx = ranked.gather(1, slots)  # (B, M)
        length = valid_lengths(mask).unsqueeze(-1)
        centre = (idx.to(memory.dtype) + 0.5) / length
        anchors = torch.stack([centre, torch.full_like(centre, self.anchor_width)], dim=-1)
        feats = memory.gather(1, idx.unsqueeze(-1).expand(-1, -1, f))
        spans = refine_references(anchors, self.proposal(feats))
        latent = self.content(feats) if self.content is not None else None
        enc = {"pred_logits": logits.gather(1, idx), "pred_spans": spans}
        return spans.detach(), latent, enc


class SparseStreamLayer(nn.Module):
    """One level of S: text CA, query SA (Eq. 5), video attention (RDSA, Eq. 6), PFFN (Eq. 6).

    ``order`` is any permutation of a subset of ``ca, sa, rdsa, ffn`` (Tables 7 and N); the
    ``rdsa`` slot holds whichever video attention ``video_attention`` is (Table 5). The
    reference position embedding is added to the SA queries/keys (and used by the baselines'
    cross-attention); the text CA uses the latent alone.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        order: Sequence[str],
        video_attention: nn.Module | None,
        ffn_ratio: int = 4,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        unknown = [o for o in order if o not in SPARSE_MODULES]
        if unknown or len(set(order)) != len(order):
            raise ValueError(
                f"sparse order {list(order)} must list distinct modules of {SPARSE_MODULES}"
            )
        if "rdsa" in order and video_attention is None:
            raise ValueError("the sparse order has an 'rdsa' slot but no video attention was given")
        self.order = tuple(order)
        self.blocks = nn.ModuleDict()
        for name in self.order:
            if name in ("ca", "sa"):
                self.blocks[name] = AttentionBlock(dim, num_heads, dropout, drop_path)
            elif name == "rdsa":
                assert video_attention is not None
                self.blocks[name] = video_attention
            else:
                self.blocks[name] = FeedForwardBlock(dim, ffn_ratio, dropout, drop_path)

    def forward(
        self,
        latent: Tensor,
        refs: Tensor,
        query_pos: Tensor,
        text: Tensor,
        text_mask: Tensor,
        dense: Tensor,
        dense_pos: Tensor,
        video_mask: Tensor,
    ) -> Tensor:
        """latent ``(B, M, F)``, refs ``(B, M, 2)``, query_pos ``(B, M, F)``, text ``(B, L, F)``,
        dense ``(B, T, F)`` (the conditioning signal), dense_pos ``(1, T, F)`` -> ``(B, M, F)``."""
        for name in self.order:
            block = self.blocks[name]
            if name == "ca":
                latent = block(latent, text, text_mask)  # Eq. 5, CA(H, T, T)
            elif name == "sa":
                latent = block(latent, query_pos=query_pos)  # Eq. 5, SA
            elif name == "rdsa":
                latent = block(latent, refs, query_pos, dense, dense_pos, video_mask)  # Eq. 6
            else:
                latent = block(latent)  # Eq. 6, PFFN
        return latent
