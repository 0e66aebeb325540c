"""Ablation switches do what their names say (Tables 5, 6, 7, J, M), checked on the tensors.

Each test watches the model from outside with forward hooks: which tensor feeds which module,
what is detached, which parameters exist or receive gradient.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import nn

from sidetune.grounding.model import SDST, build_sdst, synthetic_config
from sidetune.grounding.rdsa import RDSA, DeformableCrossAttention, DeformableSampler
from sidetune.grounding.sparse_stream import SparseStreamLayer

FV, FT = 12, 10


def _batch(b: int = 2, k: int = 2, t: int = 10, length: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    video_mask = torch.ones(b, t, dtype=torch.bool)
    video_mask[1, 7:] = False
    return {
        "video_feats": torch.randn(b, k, t, FV, generator=g),
        "video_mask": video_mask,
        "text_feats": torch.randn(b, k, length, FT, generator=g),
        "text_mask": torch.ones(b, length, dtype=torch.bool),
    }


def _model(**overrides: Any) -> SDST:
    torch.manual_seed(0)
    cfg = synthetic_config(
        FV, FT, hidden_dim=16, num_heads=2, num_queries=4, drop_path=0.0, proj_dropout=0.0
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    cfg.__post_init__()
    model = build_sdst(cfg).eval()
    # Deformable-DETR init zeroes the offset / weight predictors, which would make every
    # "does X depend on Y" question trivially "no": give them random weights.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, DeformableSampler):
                m.offsets.weight.normal_(std=0.5)
                m.weights.weight.normal_(std=0.5)
    return model


@contextmanager
def record_inputs(modules: list[nn.Module]) -> Iterator[list[tuple[nn.Module, tuple[Any, ...]]]]:
    """Record ``(module, positional args)`` of every call, in call order."""
    calls: list[tuple[nn.Module, tuple[Any, ...]]] = []
    handles = [m.register_forward_hook(lambda mod, a, o: calls.append((mod, a))) for m in modules]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def _sampler_calls(model: SDST, batch: dict[str, torch.Tensor]) -> list[tuple[Any, ...]]:
    samplers = [m for m in model.modules() if isinstance(m, DeformableSampler)]
    with record_inputs(samplers) as calls, torch.no_grad():
        model(**batch)
    return [args for _, args in calls]


# --- rdsa_use_latent: Eq. 10-11 by default, the RDSA / deformable-CA hybrid as an option -------


@pytest.mark.parametrize("use_latent", [False, True])
def test_rdsa_offsets_see_latent_only_in_hybrid(use_latent: bool) -> None:
    """Default RDSA: changing only H^0 leaves the first level's offsets and weights unchanged."""
    model = _model(rdsa_use_latent=use_latent)
    rdsa = model.sparse_layers[0].blocks["rdsa"].core
    assert isinstance(rdsa, RDSA)
    assert (rdsa.latent_proj is not None) == use_latent
    batch = _batch()
    before = _sampler_calls(model, batch)[0]
    with torch.no_grad():
        model.queries.latent.normal_()  # H^0 only; R^0 and D are untouched
    after = _sampler_calls(model, batch)[0]
    torch.testing.assert_close(before[1], after[1])  # same references at level 1
    q0, q1 = before[0], after[0]  # the query that predicts offsets and weights
    assert torch.equal(q0, q1) != use_latent
    rdsa_params = {n for n, _ in model.named_parameters() if ".blocks.rdsa.core." in n}
    assert any("latent_proj" in n for n in rdsa_params) == use_latent


def test_deformable_ca_offsets_come_from_latent_not_dense() -> None:
    model = _model(attention="deformable_ca")
    assert isinstance(model.sparse_layers[0].blocks["rdsa"].core, DeformableCrossAttention)
    batch = _batch()
    first = _sampler_calls(model, batch)[0][0]
    changed = dict(batch, video_feats=batch["video_feats"] * 3 + 1)
    # Level 1 of deformable CA: query = H^0 after text CA and SA, + pos(R^0); D changes nothing.
    torch.testing.assert_close(_sampler_calls(model, changed)[0][0], first)
    rdsa_model = _model()
    rdsa_first = _sampler_calls(rdsa_model, batch)[0][0]
    assert not torch.allclose(_sampler_calls(rdsa_model, changed)[0][0], rdsa_first)


# --- condition (Table 6): which dense signal conditions the sparse stream ------------------------


@pytest.mark.parametrize("condition", ["raw", "post_ca", "post_sa", "post_ffn"])
def test_condition_selects_the_dense_signal(condition: str) -> None:
    model = _model(condition=condition)
    dense_layer, sparse_layer = model.dense_layers[0], model.sparse_layers[0]
    outs: list[dict[str, torch.Tensor]] = []
    h = dense_layer.register_forward_hook(lambda m, a, o: outs.append(o))
    with record_inputs([sparse_layer]) as calls, torch.no_grad():
        out = model(**_batch())
    h.remove()
    assert len(calls) == len(outs) == 2
    for level, (_, args) in enumerate(calls):
        fed = args[5]  # SparseStreamLayer(latent, refs, query_pos, text, text_mask, dense, ...)
        expected = out["video_levels"][:, level] if condition == "raw" else outs[level][condition]
        assert torch.equal(fed, expected)
    if condition != "post_ffn":  # the recurrence itself always carries post_ffn (D^{l+1})
        assert not torch.equal(calls[1][1][5], outs[0]["post_ffn"])


# --- sparse_modules / sparse_order (Tables 7, N) ---------------------------------------------------


@pytest.mark.parametrize("drop", ["ca", "sa", "rdsa", "ffn"])
def test_sparse_modules_removes_the_block_and_its_parameters(drop: str) -> None:
    keep = tuple(m for m in ("ca", "sa", "rdsa", "ffn") if m != drop)
    model = _model(sparse_modules=keep)
    layer = model.sparse_layers[0]
    assert isinstance(layer, SparseStreamLayer) and tuple(layer.blocks) == keep
    names = {n for n, _ in model.named_parameters()}
    assert not any(f"sparse_layers.0.blocks.{drop}." in n for n in names)
    has_sampler = any(isinstance(m, DeformableSampler) for m in model.modules())
    assert has_sampler == (drop != "rdsa")
    blocks = list(layer.blocks.values())
    with record_inputs(blocks) as calls, torch.no_grad():
        model(**_batch())
    order = [next(k for k, b in layer.blocks.items() if b is mod) for mod, _ in calls]
    assert order == list(keep) * 2  # K = 2 levels, in the configured order


def test_sparse_order_is_the_execution_order() -> None:
    model = _model(sparse_order="rdsa-sa-ca-ffn")
    layer = model.sparse_layers[0]
    with record_inputs(list(layer.blocks.values())) as calls, torch.no_grad():
        model(**_batch())
    order = [next(k for k, b in layer.blocks.items() if b is mod) for mod, _ in calls]
    assert order == ["rdsa", "sa", "ca", "ffn"] * 2


# --- rdsa_points / rdsa_cnn (Table M) --------------------------------------------------------------


def _rdsa_query_change(points: str, cnn: bool, clip: int) -> bool:
    """Does changing dense clip ``clip`` change RDSA's query for a reference over clips 4..8?"""
    torch.manual_seed(0)
    f, t = 8, 16
    rdsa = RDSA(f, 2, 2, 8, points=points, use_cnn=cnn)  # type: ignore[arg-type]
    dense = torch.randn(1, t, f)
    mask = torch.ones(1, t, dtype=torch.bool)
    # centre 0.40625 -> clip 6 exactly, width 0.25 -> l/r at clips 4 and 8 (clip centres).
    refs = torch.tensor([[[6.5 / t, 4.0 / t]]])
    latent = torch.randn(1, 1, f)
    before = rdsa.query(latent, refs, dense, mask)
    changed = dense.clone()
    changed[0, clip] += 5.0
    return not torch.allclose(rdsa.query(latent, refs, changed, mask), before)


def test_rdsa_points_and_cnn_decide_what_the_query_sees() -> None:
    # Without the CNN X_Q is the dense embedding at exactly the chosen points.
    assert _rdsa_query_change("c", False, 6)
    assert not _rdsa_query_change("c", False, 4)
    assert _rdsa_query_change("lr", False, 4) and _rdsa_query_change("lr", False, 8)
    assert not _rdsa_query_change("lr", False, 6)
    assert all(_rdsa_query_change("lcr", False, c) for c in (4, 6, 8))
    assert not _rdsa_query_change("lcr", False, 5)  # between the points
    # The two k=3 convolutions give every point a +-2 clip context ...
    assert _rdsa_query_change("c", True, 4) and _rdsa_query_change("c", True, 8)
    assert _rdsa_query_change("lcr", True, 5)
    # ... and no further.
    assert not _rdsa_query_change("c", True, 3)
    assert not _rdsa_query_change("c", True, 9)


@pytest.mark.parametrize(("points", "cnn"), [("c", False), ("lr", True), ("lcr", True)])
def test_rdsa_points_and_cnn_parameters(points: str, cnn: bool) -> None:
    rdsa = RDSA(16, 2, 2, 8, points=points, use_cnn=cnn)  # type: ignore[arg-type]
    assert (rdsa.cnn is not None) == cnn
    first = rdsa.query_mlp.layers[0]
    assert isinstance(first, nn.Linear) and first.in_features == len(points) * 16


# --- shared_levels (Table J) ---------------------------------------------------------------------


@pytest.mark.parametrize("shared", [True, False])
def test_shared_levels_one_layer_called_k_times(shared: bool) -> None:
    model = _model(shared_levels=shared, num_levels=3)
    n = 1 if shared else 3
    assert len(model.dense_layers) == len(model.sparse_layers) == n
    batch = _batch(k=3)
    layers = list(model.dense_layers) + list(model.sparse_layers)
    with record_inputs(layers) as calls, torch.no_grad():
        model(**batch)
    called = [id(m) for m, _ in calls]
    if shared:
        assert called == [id(model.dense_layers[0]), id(model.sparse_layers[0])] * 3
    else:
        expected = []
        for level in range(3):
            expected += [id(model.dense_layers[level]), id(model.sparse_layers[level])]
        assert called == expected


# --- query_init (Table 5) and what is detached ---------------------------------------------------


@pytest.mark.parametrize("init", ["learned", "pure", "mixed"])
def test_query_init_sources_and_detached_references(init: str) -> None:
    model = _model(query_init=init).train()
    sparse = model.sparse_layers[0]
    with record_inputs([sparse]) as calls:
        out = model(**_batch())
    refs0, latent0 = calls[0][1][1], calls[0][1][0]
    if init == "learned":
        assert model.query_init is None and "enc_outputs" not in out
        torch.testing.assert_close(refs0[0], torch.sigmoid(model.queries.ref_logits))
        assert refs0.requires_grad  # R^0 is learned through the first level
    else:
        assert model.query_init is not None and model.query_init.mode == init
        # DINO: the proposals become the references, detached.
        torch.testing.assert_close(refs0, out["enc_outputs"]["pred_spans"].detach())
        assert not refs0.requires_grad
    # Between levels the references are always detached (R^{l+1} = stop-grad of level l).
    refs1 = calls[1][1][1]
    assert not refs1.requires_grad
    torch.testing.assert_close(refs1, out["aux_outputs"][0]["pred_spans"].detach())
    out["pred_spans"].sum().backward()
    grad_latent = model.queries.latent.grad
    grad_refs = model.queries.ref_logits.grad
    if init == "pure":  # latents from the selected clip features; H^0 is not used
        assert grad_latent is None and grad_refs is None
        assert model.query_init.content is not None  # type: ignore[union-attr]
        assert not torch.equal(latent0[0], model.queries.latent)
    elif init == "mixed":  # learned H^0, references from the proposals
        assert grad_latent is not None and grad_refs is None
        assert model.query_init.content is None  # type: ignore[union-attr]
    else:
        assert grad_latent is not None and grad_refs is not None
