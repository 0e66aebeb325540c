"""TDS side blocks: the trainable temporal encoder that runs beside the frozen CLIP.

One :class:`TDSBlock` per CLIP layer. Tokens are ``(B, T, N, D)``: B videos, T segments,
N = h * w patches, side width D. Order inside a block (Fig. 3b):

(a) temporal branch  ``x + TD(conv1x1(dwconv_t(conv1x1(BN(x)))))``
(b) attention        patch queries; keys / values = shifted CLS of the CLIP tap + patches
(c) MLP              ``x + fc2(GELU(fc1(BN(x))))``
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from sidetune.nn.linear import Linear, linear
from sidetune.recognition.adapters import (
    TDAdapter,
    TDReference,
    TokenBatchNorm,
    depthwise_padded,
)
from sidetune.recognition.lean_saving import lean_active, rebuild


def cls_token_shift(cls: Tensor) -> Tensor:
    """Shift the CLS token along time (TokenShift): (B, T, D) -> (B, T, D).

    Frame t receives channels ``[:D//2]`` from frame ``t + 1`` and ``[D//2:]`` from frame
    ``t - 1``; the missing neighbours at both ends are zeros.
    """
    fold = cls.shape[-1] // 2
    out = torch.zeros_like(cls)
    out[:, :-1, :fold] = cls[:, 1:, :fold]
    out[:, 1:, fold:] = cls[:, :-1, fold:]
    return out


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth per video: x (B, ...)."""
    if p == 0.0 or not training:
        return x
    keep = torch.empty(
        (x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device
    ).bernoulli_(1 - p)
    return x * keep / (1 - p)


class SideProjection(nn.Module):
    """LayerNorm(W) + Linear(W -> D) from a frozen CLIP tap to the side width.

    The tap is an inference tensor of the frozen model; only it is kept for backward (the
    normalised W-wide copy is recomputed), which halves what each layer's tap costs.
    tap: (M, L, W) -> (M, L, D).
    """

    def __init__(self, width: int, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=eps)
        self.linear = Linear(width, dim)

    def _project(self, tap: Tensor) -> Tensor:
        return self.linear(self.norm(tap))

    def forward(self, tap: Tensor) -> Tensor:
        if tap.is_cuda and torch.is_autocast_enabled("cuda"):
            # under autocast the frozen CLIP computes in bf16 / fp16 but its residual stream is
            # fp32: keep the tap in the autocast dtype (half the bytes; the LayerNorm upcasts)
            tap = tap.to(torch.get_autocast_dtype("cuda"))
        if torch.is_grad_enabled() and self.linear.weight.requires_grad:
            out: Tensor = torch.utils.checkpoint.checkpoint(self._project, tap, use_reentrant=False)
            return out
        return self._project(tap)


class TemporalBranch(nn.Module):
    """(a): BN3d -> 1x1x1 -> depthwise (3, 1, 1) -> 1x1x1 -> TD-Adapter (or identity)."""

    def __init__(self, dim: int, td: TDAdapter | None) -> None:
        super().__init__()
        self.norm = TokenBatchNorm(dim)
        self.pw1 = Linear(dim, dim)
        self.dw_weight = nn.Parameter(torch.empty(dim, 3))
        self.dw_bias = nn.Parameter(torch.zeros(dim))
        self.pw2 = Linear(dim, dim)
        self.td = td
        nn.init.kaiming_uniform_(self.dw_weight, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        u = self.pw1(self.norm(x))
        k = self.dw_weight.shape[1]
        up = F.pad(u, (0, 0, 0, 0, k // 2, k // 2))  # the depthwise products keep slices of up
        v = depthwise_padded(up, self.dw_weight, self.dw_bias)
        v = rebuild(v, depthwise_padded, up, self.dw_weight, self.dw_bias)  # pw2 keeps v
        y = self.pw2(v)
        return y if self.td is None else self.td(y)


class SideAttention(nn.Module):
    """(b): multi-head attention, queries = patches, keys / values = [shifted CLS; patches].

    A shared learnable position embedding is added to the patches, then one pre-LayerNorm.
    x: (B, T, N, D), cls: (B, T, D), pos: (N, D) -> (B, T, N, D) (the residual update).
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = Linear(dim, 3 * dim)
        self.out = Linear(dim, dim)

    recompute: bool = False  # lean saving: keep only the tokens, rebuild q / k / v in backward

    def forward(self, x: Tensor, cls: Tensor, pos: Tensor) -> Tensor:
        tokens = torch.cat([cls_token_shift(cls).unsqueeze(2), x + pos], dim=2)  # (B, T, N+1, D)
        if self.recompute and lean_active() and self.training:
            out: Tensor = _LeanAttention.apply(tokens, self, *self._params())
            return out
        return self.out(self._attend(tokens))

    def _attend(self, tokens: Tensor) -> Tensor:
        """(B, T, N+1, D) tokens -> the merged heads (B, T, N, D), before the out projection."""
        b, t, n1, d = tokens.shape
        normed = rebuild(self.norm(tokens), self._norm, tokens)  # LN keeps tokens anyway
        hd = d // self.heads
        qkv = self.qkv(normed.reshape(b * t, n1, d))
        qkv = qkv.reshape(b * t, n1, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0, :, :, 1:], qkv[1], qkv[2]  # queries: patches only
        y = F.scaled_dot_product_attention(q, k, v)  # (BT, heads, N, hd); keeps y
        return rebuild(_merge_heads(y, b, t), _merge_heads, y, b, t)

    def _params(self) -> tuple[Tensor, ...]:
        return (self.norm.weight, self.norm.bias, self.qkv.weight, self.qkv.bias,
                self.out.weight, self.out.bias)  # fmt: skip

    def _norm(self, tokens: Tensor) -> Tensor:
        return F.layer_norm(
            tokens, tokens.shape[-1:], self.norm.weight, self.norm.bias, self.norm.eps
        )


class _LeanAttention(torch.autograd.Function):
    """:class:`SideAttention` keeping only its tokens: backward rebuilds the LayerNorm, q / k / v
    and the attention (not the out projection) instead of storing them."""

    @staticmethod
    def forward(ctx: Any, tokens: Tensor, attn: SideAttention, *params: Tensor) -> Tensor:
        ctx.attn = attn
        ctx.save_for_backward(tokens)
        with torch.no_grad():
            return attn.out(attn._attend(tokens))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (tokens,) = ctx.saved_tensors
        attn: SideAttention = ctx.attn
        with torch.enable_grad():
            td = tokens.detach().requires_grad_(True)
            merged = attn._attend(td)
        grad_merged, grad_w, grad_b = _output_layer_grads(grad, merged.detach(), attn.out)
        inputs = (td, attn.norm.weight, attn.norm.bias, attn.qkv.weight, attn.qkv.bias)
        gt, gnw, gnb, gqw, gqb = torch.autograd.grad(merged, inputs, grad_merged)
        return gt, None, gnw, gnb, gqw, gqb, grad_w, grad_b


def _output_layer_grads(grad: Tensor, hidden: Tensor, layer: nn.Linear) -> tuple[Tensor, ...]:
    """Backward of ``out = layer(hidden)`` by hand: ``(d hidden, d weight, d bias)``.

    For the lean blocks, which rebuild ``hidden`` but not ``out``: the output layer's
    gradients need no autograd graph (and no second forward of ``layer``)."""
    flat_grad = grad.reshape(-1, grad.shape[-1])
    grad_w = linear(flat_grad.t(), hidden.reshape(-1, hidden.shape[-1]).t())
    return linear(grad, layer.weight.t()), grad_w, flat_grad.sum(0)


def _merge_heads(y: Tensor, b: int, t: int) -> Tensor:
    """(B T, heads, N, hd) -> (B, T, N, heads hd)."""
    return y.transpose(1, 2).reshape(b, t, y.shape[2], -1)


class SideMLP(nn.Module):
    """(c): BN3d pre-norm -> Linear(D, rD) -> GELU -> Linear(rD, D)."""

    def __init__(self, dim: int, ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.norm = TokenBatchNorm(dim)
        self.fc1 = Linear(dim, hidden)
        self.fc2 = Linear(hidden, dim)

    recompute: bool = True  # lean saving: keep only the input, rebuild fc1 / GELU in backward

    def forward(self, x: Tensor) -> Tensor:
        if self.recompute and lean_active() and self.training:
            out: Tensor = _LeanMLP.apply(x, self, *self._params())
            return out
        h = self.fc1(self.norm(x))
        return self.fc2(rebuild(F.gelu(h), F.gelu, h))  # GELU keeps h anyway

    def _params(self) -> tuple[Tensor, ...]:
        return (self.norm.weight, self.norm.bias, self.fc1.weight, self.fc1.bias,
                self.fc2.weight, self.fc2.bias)  # fmt: skip


class _LeanMLP(torch.autograd.Function):
    """:class:`SideMLP` keeping only its input: backward rebuilds the norm, ``fc1`` and GELU
    outputs from it (one extra ``fc1`` matmul) instead of storing the r D-wide hidden layer.
    The forward updates the BatchNorm running statistics once, as the plain module does."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, mlp: SideMLP, *params: Tensor) -> Tensor:
        ctx.mlp = mlp
        ctx.save_for_backward(x)
        with torch.no_grad():
            return mlp.fc2(F.gelu(mlp.fc1(mlp.norm(x))))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        mlp: SideMLP = ctx.mlp
        with torch.enable_grad():
            xd = x.detach().requires_grad_(True)
            z, _, _ = mlp.norm.normalize_with_stats(xd)
            g = F.gelu(mlp.fc1(z))
        grad_g, grad_w2, grad_b2 = _output_layer_grads(grad, g.detach(), mlp.fc2)
        inputs = (xd, mlp.norm.weight, mlp.norm.bias, mlp.fc1.weight, mlp.fc1.bias)
        gx, gnw, gnb, gw1, gb1 = torch.autograd.grad(g, inputs, grad_g)
        return gx, None, gnw, gnb, gw1, gb1, grad_w2, grad_b2


class TDSBlock(nn.Module):
    """One TDS block (Fig. 3b); modules passed in (composition), see :func:`build_tds_block`.

    x: (B, T, N, D) side stream; cls: (B, T, D) projected CLS of the matching CLIP layer;
    pos: (N, D) shared patch position embedding. Returns (B, T, N, D).
    """

    def __init__(
        self,
        temporal: TemporalBranch,
        attention: SideAttention,
        mlp: SideMLP,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.temporal = temporal
        self.attention = attention
        self.mlp = mlp
        self.drop_path = drop_path

    def forward(self, x: Tensor, cls: Tensor, pos: Tensor) -> Tensor:
        x = x + drop_path(self.temporal(x), self.drop_path, self.training)
        x = x + drop_path(self.attention(x, cls, pos), self.drop_path, self.training)
        return x + drop_path(self.mlp(x), self.drop_path, self.training)


def build_tds_block(
    dim: int,
    heads: int,
    *,
    mlp_ratio: float = 4.0,
    td_adapter: bool = True,
    td_reference: TDReference = "pool",
    td_kernel: int = 3,
    td_reduction: int = 16,
    drop_path: float = 0.0,
    depth: int = 12,
) -> TDSBlock:
    """A side block; without TD-Adapter it is the plain temporal-conv block (Table 3a baseline)."""
    td = TDAdapter(dim, td_reduction, td_kernel, td_reference) if td_adapter else None
    block = TDSBlock(
        TemporalBranch(dim, td), SideAttention(dim, heads), SideMLP(dim, mlp_ratio), drop_path
    )
    # GPT-2 / CLIP style scaled init of the residual projections (as in Side4Video's side blocks)
    attn_std = dim**-0.5
    proj_std = attn_std * (2 * depth) ** -0.5
    nn.init.normal_(block.attention.qkv.weight, std=attn_std)
    nn.init.zeros_(block.attention.qkv.bias)
    nn.init.normal_(block.attention.out.weight, std=proj_std)
    nn.init.zeros_(block.attention.out.bias)
    nn.init.normal_(block.mlp.fc1.weight, std=(2 * dim) ** -0.5)
    nn.init.normal_(block.mlp.fc2.weight, std=proj_std)
    return block


@contextlib.contextmanager
def frozen_batchnorm_stats(module: nn.Module) -> Iterator[None]:
    """Keep BatchNorm running statistics unchanged (momentum 0) inside the block.

    Used while a checkpointed block is recomputed in backward, so its statistics are updated
    once per step, not twice.
    """
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [
        (m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
        for m in bns
    ]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (mom, tracked) in zip(bns, saved):
            m.momentum = mom
            if tracked is not None and m.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def run_block(block: TDSBlock, x: Tensor, cls: Tensor, pos: Tensor, checkpoint: bool) -> Tensor:
    """Apply ``block``; with ``checkpoint`` keep only its inputs and recompute it in backward."""
    if not (checkpoint and torch.is_grad_enabled()):
        return block(x, cls, pos)
    calls = [0]

    def fn(x: Tensor, cls: Tensor, pos: Tensor) -> Tensor:
        calls[0] += 1
        ctx = frozen_batchnorm_stats(block) if calls[0] > 1 else contextlib.nullcontext()
        with ctx:
            out: Tensor = block(x, cls, pos)
        return out

    out: Tensor = torch.utils.checkpoint.checkpoint(fn, x, cls, pos, use_reentrant=False)
    return out
