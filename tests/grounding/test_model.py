"""SDST model: output contract, masks, switches, parameter sharing, gradient flow."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any, cast

import pytest
import torch

from sidetune.config import ConfigError, from_dict
from sidetune.grounding.dense_stream import DenseStreamLayer
from sidetune.grounding.model import (
    SDST,
    SDST_PRESETS,
    SDSTConfig,
    build_sdst,
    qvhighlights_config,
    sdst_synthetic,
    synthetic_config,
    tacos_config,
)
from sidetune.nn.position import sinusoidal_position_embedding
from sidetune.utils.params import count_parameters

FV, FT = 12, 10


def _batch(b: int = 3, k: int = 2, t: int = 9, length: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    video_mask = torch.ones(b, t, dtype=torch.bool)
    video_mask[1, 5:] = False
    text_mask = torch.ones(b, length, dtype=torch.bool)
    text_mask[2, 3:] = False
    return {
        "video_feats": torch.randn(b, k, t, FV, generator=g),
        "video_mask": video_mask,
        "text_feats": torch.randn(b, k, length, FT, generator=g),
        "text_mask": text_mask,
    }


def _loss(out: dict[str, Any]) -> torch.Tensor:
    """A scalar that touches every prediction (stand-in for the criterion)."""
    total = (
        out["pred_logits"].sum()
        + out["pred_spans"].sum()
        + out["pred_actionness"].sum()
        + out["saliency"].sum()
        + out["video_levels"].pow(2).mean()
        + out["text_pooled"].pow(2).mean()
    )
    for aux in out["aux_outputs"]:
        total = total + aux["pred_logits"].sum() + aux["pred_spans"].sum()
    if "enc_outputs" in out:
        total = (
            total + out["enc_outputs"]["pred_logits"].sum() + out["enc_outputs"]["pred_spans"].sum()
        )
    return total


def test_output_contract() -> None:
    model = sdst_synthetic(FV, FT, num_levels=3, num_queries=5, hidden_dim=32).eval()
    batch = _batch(k=3)
    out = model(**batch)
    b, t = 3, 9
    assert out["pred_logits"].shape == (b, 5)
    assert out["pred_spans"].shape == (b, 5, 2)
    assert ((out["pred_spans"] > 0) & (out["pred_spans"] < 1)).all()
    assert out["pred_actionness"].shape == (b, 5)
    assert ((out["pred_actionness"] >= 0) & (out["pred_actionness"] <= 1)).all()
    assert out["saliency"].shape == (b, t)
    assert out["saliency"].abs().max() <= 1.0 + 1e-5
    assert len(out["aux_outputs"]) == 2
    for aux in out["aux_outputs"]:
        assert set(aux) == {"pred_logits", "pred_spans"}
        assert aux["pred_spans"].shape == (b, 5, 2)
    assert out["video_levels"].shape == (b, 3, t, 32)
    assert out["text_pooled"].shape == (b, 3, 32)
    assert torch.equal(out["video_mask"], batch["video_mask"])
    assert "enc_outputs" not in out


def _slice(batch: dict[str, torch.Tensor], i: int, t: int, length: int) -> dict[str, torch.Tensor]:
    return {
        "video_feats": batch["video_feats"][i : i + 1, :, :t],
        "video_mask": batch["video_mask"][i : i + 1, :t],
        "text_feats": batch["text_feats"][i : i + 1, :, :length],
        "text_mask": batch["text_mask"][i : i + 1, :length],
    }


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"attention": "deformable_ca"},
        {"attention": "standard_ca"},
        {"query_init": "pure"},
        {"text_cls": False},
    ],
)
def test_padding_does_not_change_valid_outputs(overrides: dict[str, Any]) -> None:
    torch.manual_seed(0)
    model = sdst_synthetic(FV, FT, **overrides).eval()
    batch = _batch()
    # garbage in the padded slots must not matter
    batch["video_feats"][1, :, 5:] = 1e3
    batch["text_feats"][2, :, 3:] = -1e3
    out = model(**batch)
    for i, (t, length) in ((1, (5, 6)), (2, (9, 3))):
        alone = model(**_slice(batch, i, t, length))
        for key in ("pred_logits", "pred_spans", "pred_actionness"):
            assert torch.allclose(out[key][i], alone[key][0], atol=1e-4), key
        assert torch.allclose(out["saliency"][i, :t], alone["saliency"][0], atol=1e-4)
        assert torch.allclose(out["text_pooled"][i], alone["text_pooled"][0], atol=1e-4)
        assert torch.allclose(out["video_levels"][i, :, :t], alone["video_levels"][0], atol=1e-4)
    assert (out["saliency"][1, 5:] == 0).all()


def test_beta_zero_init_first_level_sees_only_video() -> None:
    model = sdst_synthetic(FV, FT).eval()
    assert torch.equal(model.gates(), torch.zeros(2))
    batch = _batch()
    captured: dict[str, torch.Tensor] = {}
    layer = model.dense_layers[0]

    def hook(_m: torch.nn.Module, _args: Any, out: dict[str, torch.Tensor]) -> None:
        captured.setdefault("d1", out["post_ffn"])

    layer.register_forward_hook(hook)
    out = model(**batch)
    v1 = out["video_levels"][:, 0]
    layer = cast(DenseStreamLayer, layer)
    tmask = model.text_attention_mask(batch["text_mask"])
    text1 = model.text_proj(batch["text_feats"][:, 0])
    text1 = text1 * batch["text_mask"][..., None]  # projected padded tokens are zeros
    pos = sinusoidal_position_embedding(9, 32)[None]
    manual = layer.ffn(
        layer.self_attn(
            layer.cross_attn(v1, text1, tmask), key_mask=batch["video_mask"], query_pos=pos
        )
    )
    assert torch.allclose(captured["d1"], manual, atol=1e-5)


def test_cls_token_is_excluded() -> None:
    model = sdst_synthetic(FV, FT).eval()
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    got = model.text_attention_mask(mask)
    assert got.tolist() == [[False, True, True, False], [True, False, False, False]]
    batch = _batch()
    out1 = model(**batch)
    batch["text_feats"][:, :, 0] += 5.0  # change only the CLS token
    out2 = model(**batch)
    assert torch.allclose(out1["pred_spans"], out2["pred_spans"], atol=1e-5)
    model_no_cls = sdst_synthetic(FV, FT, text_cls=False).eval()
    assert model_no_cls.text_attention_mask(mask).tolist() == mask.tolist()


SWITCHES: list[dict[str, Any]] = [
    {"attention": a, "query_init": q}
    for a, q in itertools.product(
        ["rdsa", "deformable_ca", "standard_ca"], ["learned", "pure", "mixed"]
    )
]
SWITCHES += [{"condition": c} for c in ("raw", "post_ca", "post_sa")]
SWITCHES += [
    {"sparse_modules": tuple(m for m in ("ca", "sa", "rdsa", "ffn") if m != drop)}
    for drop in ("ca", "sa", "rdsa", "ffn")
]
SWITCHES += [
    {"sparse_order": o}
    for o in (
        "sa-ca-rdsa-ffn",
        "sa-rdsa-ca-ffn",
        "rdsa-sa-ca-ffn",
        "rdsa-ca-sa-ffn",
        "ca-rdsa-sa-ffn",
    )
]
SWITCHES += [
    {"rdsa_points": p, "rdsa_cnn": c}
    for p, c in itertools.product(["c", "lr", "lcr"], [True, False])
]
SWITCHES += [
    {"rdsa_use_latent": False},
    {"shared_levels": False},
    {"num_levels": 1},
    {"num_levels": 3},
    {"proj_layers": 1},
]


@pytest.mark.parametrize(
    "overrides", SWITCHES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
)
def test_every_switch_runs_forward_backward(overrides: dict[str, Any]) -> None:
    cfg = synthetic_config(FV, FT, hidden_dim=16, num_heads=2, num_queries=4, **overrides)
    model = build_sdst(cfg).train()
    k = cfg.num_levels
    out = model(**_batch(k=k))
    assert len(out["aux_outputs"]) == k - 1
    assert ("enc_outputs" in out) == (cfg.query_init != "learned")
    _loss(out).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_gradient_reaches_every_parameter() -> None:
    model = sdst_synthetic(FV, FT).train()
    _loss(model(**_batch())).backward()
    missing = {
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    }
    # At init the offset / weight predictors (Deformable-DETR init) and the last regression
    # layer (DAB-DETR init) have zero weights, so what feeds only them - the RDSA query path
    # (CNN, query MLP, latent map) and the hidden regression layers - gets exactly zero
    # gradient on the very first step ...
    upstream = {
        n
        for n in missing
        if (".rdsa.core." in n and ".sampler." not in n) or n.startswith("reg_head.mlp.layers.")
    }
    assert missing and missing == upstream
    # ... until the first update makes those weights non-zero.
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.zero_grad()
    _loss(model(**_batch())).backward()
    missing = {
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    }
    assert missing == set()


def _layer_params(model: SDST) -> int:
    return sum(count_parameters(m)[0] for m in (model.dense_layers[0], model.sparse_layers[0]))


def test_shared_vs_unshared_parameter_counts() -> None:
    cfg = synthetic_config(FV, FT, num_levels=3)
    shared = build_sdst(cfg)
    unshared = build_sdst(replace(cfg, shared_levels=False))
    assert len(shared.dense_layers) == 1 and len(unshared.dense_layers) == 3
    n_shared, n_unshared = count_parameters(shared)[0], count_parameters(unshared)[0]
    assert n_unshared - n_shared == 2 * _layer_params(shared)


def test_qvhighlights_parameter_count() -> None:
    """Pins the preset's size (see the report for the comparison with the paper's 4.1M)."""
    model = build_sdst(qvhighlights_config(text_dim=4096))
    trainable, total = count_parameters(model)
    assert trainable == total == 5_615_301
    assert count_parameters(build_sdst(qvhighlights_config(text_dim=1024)))[0] == 4_828_869
    # The RDSA/deformable-CA hybrid adds the latent map H -> Q_hat: 256 x 64 + 64.
    hybrid = build_sdst(qvhighlights_config(text_dim=4096, rdsa_use_latent=True))
    assert count_parameters(hybrid)[0] == 5_615_301 + 256 * 64 + 64
    assert tacos_config().num_queries == 5
    assert not qvhighlights_config(4096).text_cls and qvhighlights_config(1024).text_cls
    assert set(SDST_PRESETS) == {
        "sdst_qvhighlights",
        "sdst_charades",
        "sdst_tacos",
        "sdst_synthetic",
    }


def test_config_validation_and_overrides() -> None:
    cfg = from_dict(
        SDSTConfig,
        {
            "attention": "deformable_ca",
            "sparse_modules": ["ca", "rdsa"],
            "sparse_order": "rdsa-ca-sa-ffn",
        },
        prefix="model",
    )
    assert cfg.sparse_modules == ("ca", "rdsa")
    assert cfg.active_sparse_order == ("rdsa", "ca")
    assert SDSTConfig(sparse_order="SA-Def-CA-FFN").sparse_order_tuple == (
        "sa",
        "rdsa",
        "ca",
        "ffn",
    )
    with pytest.raises(ConfigError, match="sparse_order"):
        SDSTConfig(sparse_order="ca-sa-ffn")
    with pytest.raises(ConfigError, match="sparse_modules"):
        SDSTConfig(sparse_modules=("ca", "attn"))
    with pytest.raises(ConfigError, match="attention"):
        from_dict(SDSTConfig, {"attention": "linear"}, prefix="model")
    with pytest.raises(ConfigError, match="hidden_dim"):
        SDSTConfig(hidden_dim=30)


def test_bad_inputs_are_reported() -> None:
    model = sdst_synthetic(FV, FT).eval()
    batch = _batch()
    with pytest.raises(ValueError, match="num_levels"):
        model(**{**batch, "video_feats": batch["video_feats"][:, :1]})
    with pytest.raises(ValueError, match="video_dim"):
        model(**{**batch, "video_feats": batch["video_feats"][..., :5]})
