"""Attention blocks, MLP, DropPath, sinusoidal positions."""

from __future__ import annotations

import torch

from sidetune.nn import (
    MLP,
    AttentionBlock,
    DropPath,
    FeedForwardBlock,
    MultiHeadAttention,
    sine_embed,
    sinusoidal_position_embedding,
)


def test_attention_ignores_masked_keys() -> None:
    attn = MultiHeadAttention(16, 4).eval()
    q = torch.randn(2, 3, 16)
    kv = torch.randn(2, 5, 16)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    out = attn(q, kv, kv, mask)
    alone = attn(q[1:], kv[1:, :2], kv[1:, :2])
    assert torch.allclose(out[1:], alone, atol=1e-5)
    kv2 = kv.clone()
    kv2[1, 2:] = 1e3
    assert torch.allclose(attn(q, kv2, kv2, mask)[1], out[1], atol=1e-5)


def test_fully_masked_row_is_finite() -> None:
    attn = MultiHeadAttention(8, 2)
    x = torch.randn(1, 2, 8)
    out = attn(x, x, x, torch.zeros(1, 2, dtype=torch.bool))
    assert torch.isfinite(out).all()


def test_postnorm_blocks() -> None:
    block = AttentionBlock(16, 4).eval()
    x = torch.randn(2, 6, 16)
    out = block(x, query_pos=torch.randn(1, 6, 16))
    assert out.shape == x.shape
    assert torch.allclose(out.mean(-1), torch.zeros(2, 6), atol=1e-5)  # LayerNorm last
    ffn = FeedForwardBlock(16, ratio=4).eval()
    assert ffn(x).shape == x.shape
    assert ffn.fc1.out_features == 64


def test_drop_path() -> None:
    dp = DropPath(0.5)
    x = torch.ones(1000, 3)
    dp.train()
    y = dp(x)
    rows = y[:, 0]
    assert set(rows.unique().tolist()) <= {0.0, 2.0}
    assert (y == y[:, :1]).all()  # whole samples are dropped, not elements
    assert 0.35 < (rows == 0).float().mean() < 0.65
    dp.eval()
    assert torch.equal(dp(x), x)


def test_sinusoidal_positions() -> None:
    pe = sinusoidal_position_embedding(10, 8)
    assert pe.shape == (10, 8)
    assert torch.allclose(pe[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    assert torch.allclose(pe[:, 0], torch.arange(10).float().sin())
    emb = sine_embed(torch.rand(3, 5, 2), 16)
    assert emb.shape == (3, 5, 32)


def test_mlp_layers() -> None:
    mlp = MLP(10, 20, 3, num_layers=3)
    assert [layer.in_features for layer in mlp.layers] == [10, 20, 20]
    assert mlp(torch.randn(4, 7, 10)).shape == (4, 7, 3)
