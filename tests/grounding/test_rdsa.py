"""RDSA (Eq. 10-11) and the Table 5 baselines: loop parity, sampling, padding, initialisation."""

from __future__ import annotations

import math

import pytest
import torch

from sidetune.grounding.rdsa import (
    RDSA,
    DeformableCrossAttention,
    StandardCrossAttention,
    VideoAttentionBlock,
    build_video_attention,
    head_offset_bias,
    reference_points,
)


def _lerp(x: torch.Tensor, pos: float, length: int, border: bool) -> torch.Tensor:
    """Slow linear sampling of x (T, C) at normalized pos of a ``length``-clip timeline."""
    idx = pos * length - 0.5
    if border:
        idx = min(max(idx, 0.0), length - 1.0)
    i0 = math.floor(idx)
    frac = idx - i0
    out = torch.zeros(x.shape[-1], dtype=x.dtype)
    for i, w in ((i0, 1.0 - frac), (i0 + 1, frac)):
        if 0 <= i < length and w != 0.0:
            out = out + w * x[i]
    return out


def _slow_rdsa(mod: RDSA, latent, refs, dense, lengths):  # type: ignore[no-untyped-def]
    """Loop-over-everything RDSA using the module's weights."""
    b, m, _ = refs.shape
    f = dense.shape[-1]
    mask = torch.arange(dense.shape[1])[None] < lengths[:, None]
    ctx = mod.cnn(dense, mask) if mod.cnn is not None else dense
    sampler = mod.sampler
    h, p = sampler.num_heads, sampler.num_points
    value = sampler.value_proj(dense)
    out = torch.zeros(b, m, f, dtype=dense.dtype)
    for bi in range(b):
        length = int(lengths[bi])
        for mi in range(m):
            c, w = float(refs[bi, mi, 0]), float(refs[bi, mi, 1])
            where = {"l": c - w / 2, "c": c, "r": c + w / 2}
            x_q = torch.cat([_lerp(ctx[bi], where[k], length, True) for k in mod.points])
            q = mod.query_mlp(x_q)
            if mod.latent_proj is not None:
                q = q + mod.latent_proj(latent[bi, mi])
            offsets = sampler.offsets(q).view(h, p)
            weights = sampler.weights(q).view(h, p).softmax(-1)
            heads = []
            for hi in range(h):
                acc = torch.zeros(f // h, dtype=dense.dtype)
                for pi in range(p):
                    loc = c + 0.5 * w * float(offsets[hi, pi])
                    v = value[bi, :, hi * (f // h) : (hi + 1) * (f // h)]
                    acc = acc + weights[hi, pi] * _lerp(v, loc, length, False)
                heads.append(acc)
            out[bi, mi] = sampler.out_proj(torch.cat(heads))
    return out


@pytest.mark.parametrize(
    "points,cnn,latent", [("lcr", True, True), ("c", False, False), ("lr", True, False)]
)
def test_rdsa_matches_slow_loop(points: str, cnn: bool, latent: bool) -> None:
    torch.manual_seed(0)
    b, t, m, f = 2, 9, 4, 16
    mod = RDSA(
        f,
        num_heads=4,
        num_points=3,
        query_dim=8,
        points=points,  # type: ignore[arg-type]
        use_cnn=cnn,
        use_latent=latent,
    ).double()
    with torch.no_grad():  # non-trivial offsets and weights
        mod.sampler.offsets.weight.normal_(0, 0.5)
        mod.sampler.weights.weight.normal_(0, 0.5)
    dense = torch.randn(b, t, f, dtype=torch.float64)
    latent_q = torch.randn(b, m, f, dtype=torch.float64)
    refs = torch.stack([torch.rand(b, m), torch.rand(b, m) * 0.6 + 0.05], -1).double()
    lengths = torch.tensor([9, 5])
    mask = torch.arange(t)[None] < lengths[:, None]
    fast = mod(latent_q, refs, torch.zeros_like(latent_q), dense, torch.zeros(1, t, f), mask)
    with torch.no_grad():
        slow = _slow_rdsa(mod, latent_q, refs, dense, lengths)
    assert torch.allclose(fast, slow, atol=1e-9)


def test_rdsa_samples_boundaries_of_a_ramp() -> None:
    """Without CNN, X_Q is exactly the dense embedding at l, c, r of each reference."""
    f, t = 4, 10
    mod = RDSA(f, num_heads=2, num_points=2, query_dim=4, use_cnn=False, use_latent=False)
    dense = torch.arange(t, dtype=torch.float32)[None, :, None].expand(1, t, f).contiguous()
    mask = torch.ones(1, t, dtype=torch.bool)
    refs = torch.tensor([[[0.5, 0.4]]])  # l = 0.3, c = 0.5, r = 0.7
    captured: list[torch.Tensor] = []
    mod.query_mlp.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    mod.query(torch.zeros(1, 1, f), refs, dense, mask)
    x_q = captured[0].view(3, f)[:, 0]
    assert torch.allclose(x_q, torch.tensor([2.5, 4.5, 6.5]))  # u * 10 - 0.5
    assert torch.allclose(reference_points(refs, "lr"), torch.tensor([[[0.3, 0.7]]]))


def test_head_offset_init_looks_at_different_parts() -> None:
    bias = head_offset_bias(8, 4)
    centres = bias.mean(-1)
    assert torch.allclose(centres[:3], torch.tensor([-1.0, 1.0, 0.0]))
    assert bias.shape == (8, 4)
    assert centres.unique().numel() >= 7  # heads cover distinct regions
    mod = RDSA(16, num_heads=8, num_points=4)
    loc, weights, offsets = mod.sampler.sampling(
        torch.randn(1, 2, 64), torch.tensor([[[0.5, 0.2], [0.3, 0.1]]])
    )
    assert torch.allclose(offsets[0, 0], bias)  # zero weights: offsets are the bias at init
    assert torch.allclose(weights, torch.full_like(weights, 0.25))
    assert torch.allclose(loc[0, 0, 0].mean(), torch.tensor(0.4))  # head 0 at the left boundary


@pytest.mark.parametrize("kind", ["rdsa", "deformable_ca", "standard_ca"])
def test_padding_invariance(kind: str) -> None:
    torch.manual_seed(0)
    f, m = 16, 3
    core = build_video_attention(kind, f, 4, num_points=2, query_dim=8)  # type: ignore[arg-type]
    block = VideoAttentionBlock(core, f).eval()
    dense = torch.randn(1, 6, f)
    latent, refs = torch.randn(1, m, f), torch.rand(1, m, 2) * 0.5 + 0.1
    qpos, pos = torch.randn(1, m, f), torch.randn(1, 10, f)
    alone = block(latent, refs, qpos, dense, pos[:, :6], torch.ones(1, 6, dtype=torch.bool))
    padded_dense = torch.cat([dense, torch.randn(1, 4, f) * 100], dim=1)
    padded_mask = torch.arange(10)[None] < 6
    padded = block(latent, refs, qpos, padded_dense, pos, padded_mask)
    assert torch.allclose(alone, padded, atol=1e-5)


def test_baseline_query_sources() -> None:
    """Def. CA offsets depend on H only; RDSA (no latent) offsets on D only."""
    torch.manual_seed(0)
    f = 16
    dense = torch.randn(1, 8, f)
    mask = torch.ones(1, 8, dtype=torch.bool)
    refs = torch.tensor([[[0.5, 0.3]]])
    dca = DeformableCrossAttention(f, 4, 2)
    rdsa = RDSA(f, 4, 2, 8, use_latent=False)
    with torch.no_grad():
        dca.sampler.offsets.weight.normal_()
        rdsa.sampler.offsets.weight.normal_()
    h1, h2 = torch.randn(1, 1, f), torch.randn(1, 1, f)
    zero = torch.zeros(1, 1, f)
    assert not torch.allclose(dca.sampler.sampling(h1, refs)[0], dca.sampler.sampling(h2, refs)[0])
    q1, q2 = rdsa.query(h1, refs, dense, mask), rdsa.query(h2, refs, dense, mask)
    assert torch.allclose(q1, q2)
    assert not torch.allclose(q1, rdsa.query(zero, refs, torch.randn(1, 8, f), mask))
    out = StandardCrossAttention(f, 4)(h1, refs, zero, dense, torch.zeros(1, 8, f), mask)
    assert out.shape == (1, 1, f)
