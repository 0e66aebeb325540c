"""Dense stream (Eq. 3-4), sparse stream (Eq. 5-6), references, query initialisation."""

from __future__ import annotations

import pytest
import torch

from sidetune.grounding.dense_stream import DenseStreamLayer, LevelGates, gated_mix
from sidetune.grounding.rdsa import RDSA, VideoAttentionBlock
from sidetune.grounding.sparse_stream import (
    QueryInitializer,
    RecurrentQueries,
    ReferencePositionEmbedding,
    SparseStreamLayer,
    inverse_sigmoid,
    refine_references,
)
from sidetune.nn.position import sinusoidal_position_embedding


def test_gates_zero_init_and_straight_through_clamp() -> None:
    gates = LevelGates(4)
    beta = gates()
    assert torch.equal(beta, torch.zeros(4))
    beta.sum().backward()
    assert gates.theta.grad is not None and torch.equal(gates.theta.grad, torch.ones(4))
    with torch.no_grad():
        gates.theta.copy_(torch.tensor([-0.3, 0.4, 1.7, 1.0]))
    beta = gates()
    assert torch.allclose(beta, torch.tensor([0.0, 0.4, 1.0, 1.0]))
    gates.theta.grad = None
    beta.sum().backward()
    assert gates.theta.grad is not None
    assert torch.equal(gates.theta.grad, torch.ones(4))  # never stuck at a bound


def test_dense_layer_at_init_is_pffn_sa_ca_of_video() -> None:
    """D^0 = 0 and beta = 0 -> D^1 = PFFN(SA(CA(V^1, T^1, T^1))) (Eq. 3-4)."""
    torch.manual_seed(0)
    f, t, length = 16, 7, 5
    layer = DenseStreamLayer(f, 4, 2).eval()
    video, text = torch.randn(2, t, f), torch.randn(2, length, f)
    vmask = torch.tensor([[True] * t, [True] * 4 + [False] * 3])
    tmask = torch.tensor([[True] * length, [True] * 2 + [False] * 3])
    pos = sinusoidal_position_embedding(t, f)[None]
    beta = LevelGates(2)()[0]
    out = layer(torch.zeros_like(video), video, beta, text, tmask, vmask, pos)
    manual = layer.ffn(
        layer.self_attn(layer.cross_attn(video, text, tmask), key_mask=vmask, query_pos=pos)
    )
    assert torch.allclose(out["post_ffn"], manual, atol=1e-6)
    assert set(out) == {"post_ca", "post_sa", "post_ffn"}
    assert torch.allclose(
        gated_mix(torch.ones(1), torch.zeros(1), torch.tensor(0.25)), torch.tensor([0.25])
    )


def test_reference_update_stays_inside_unit_interval() -> None:
    refs = torch.tensor([[[1e-7, 1.0], [0.5, 0.5], [0.999, 1e-4]]])
    for _ in range(20):
        start = torch.rand(1, 3, 2) * 0.98 + 0.01
        new = refine_references(start, torch.randn(1, 3, 2) * 2)
        assert ((new > 0) & (new < 1)).all()
    for delta in (torch.full((1, 3, 2), 50.0), torch.full((1, 3, 2), -50.0)):
        new = refine_references(refs, delta)  # float32 saturates, but never leaves [0, 1]
        assert ((new >= 0) & (new <= 1)).all() and torch.isfinite(new).all()
    assert torch.allclose(refine_references(refs[:, 1:2], torch.zeros(1, 1, 2)), refs[:, 1:2])
    assert torch.allclose(
        torch.sigmoid(inverse_sigmoid(torch.tensor([0.2, 0.7]))), torch.tensor([0.2, 0.7])
    )


def test_recurrent_queries() -> None:
    q = RecurrentQueries(5, 8)
    refs, latent = q(3)
    assert refs.shape == (3, 5, 2) and latent.shape == (3, 5, 8)
    assert ((refs > 0) & (refs < 1)).all()
    assert ReferencePositionEmbedding(8)(refs).shape == (3, 5, 8)


def _sparse(order: tuple[str, ...], f: int = 16) -> SparseStreamLayer:
    video = VideoAttentionBlock(RDSA(f, 4, 2, 8), f) if "rdsa" in order else None
    return SparseStreamLayer(f, 4, order, video, ffn_ratio=2).eval()


@pytest.mark.parametrize(
    "order", [("ca", "sa", "rdsa", "ffn"), ("rdsa", "ca", "sa", "ffn"), ("sa", "ffn")]
)
def test_sparse_layer_runs_modules_in_order(order: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    f, m, t, length = 16, 3, 6, 4
    layer = _sparse(order, f)
    calls: list[str] = []
    for name, block in layer.blocks.items():
        block.register_forward_hook(lambda _m, _a, _o, name=name: calls.append(name))
    out = layer(
        torch.randn(2, m, f),
        torch.rand(2, m, 2) * 0.5 + 0.2,
        torch.randn(2, m, f),
        torch.randn(2, length, f),
        torch.ones(2, length, dtype=torch.bool),
        torch.randn(2, t, f),
        torch.zeros(1, t, f),
        torch.ones(2, t, dtype=torch.bool),
    )
    assert calls == list(order)
    assert out.shape == (2, m, f)


def test_sparse_layer_rejects_bad_order() -> None:
    with pytest.raises(ValueError, match="distinct"):
        SparseStreamLayer(16, 4, ("ca", "ca"), None)
    with pytest.raises(ValueError, match="rdsa"):
        SparseStreamLayer(16, 4, ("rdsa",), None)


@pytest.mark.parametrize("mode", ["pure", "mixed"])
def test_query_initializer_uses_valid_clips(mode: str) -> None:
    torch.manual_seed(0)
    f, t, m = 16, 8, 5
    init = QueryInitializer(f, mode)  # type: ignore[arg-type]
    memory = torch.randn(2, t, f)
    mask = torch.tensor([[True] * t, [True] * 3 + [False] * 5])  # fewer valid clips than queries
    refs, latent, enc = init(memory, mask, m)
    assert refs.shape == (2, m, 2) and not refs.requires_grad
    assert (latent is None) == (mode == "mixed")
    assert enc["pred_logits"].shape == (2, m) and enc["pred_spans"].requires_grad
    # at init the proposal head is zero: centres are clip centres of the valid clips
    centres = refs[1, :, 0] * 3 - 0.5
    assert torch.allclose(centres, centres.round(), atol=1e-4) and (centres.round() < 3).all()
    assert torch.allclose(refs[..., 1], torch.full((2, m), 0.1), atol=1e-5)
    logits = init.score(memory[0]).squeeze(-1)
    top = refs[0, :, 0] * t - 0.5
    assert torch.allclose(top.round(), logits.topk(m).indices.float(), atol=1e-4)
