"""TDS-CLIP model: shapes, frozen CLIP, taps equal CLIP's own forward, builders, param count."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from sidetune.engine.config import TrainConfig
from sidetune.recognition.config import RecognitionConfig, TDSModelConfig
from sidetune.recognition.model import (
    TDSCLIP,
    ModelBuildError,
    build_clip_vision,
    build_tds_clip,
    td_layer_mask,
    tds_clip_b16,
)
from sidetune.recognition.recipe import TDSRecipe
from sidetune.utils.params import count_parameters

TINY: dict[str, Any] = dict(
    backbone="tiny", num_classes=6, side_dim=64, side_heads=2, td_reduction=8
)


def _model(**kw: Any) -> TDSCLIP:
    return build_tds_clip(TDSModelConfig(**{**TINY, **kw}))


def test_forward_shape() -> None:
    model = _model()
    assert model(torch.randn(2, 8, 5, 3, 32, 32)).shape == (2, 6)


def test_clip_frozen_no_grads_and_not_in_optimizer() -> None:
    model = _model()
    model.train()
    assert not model.clip.training  # frozen tower stays in eval mode
    assert all(not p.requires_grad for p in model.clip.parameters())
    model(torch.randn(2, 4, 5, 3, 32, 32)).logsumexp(-1).sum().backward()
    assert all(p.grad is None for p in model.clip.parameters())
    side = [n for n, p in model.named_parameters() if not n.startswith("clip.")]
    assert all(p.grad is not None for n, p in model.named_parameters() if n in side)

    cfg = RecognitionConfig(
        model=TDSModelConfig(**TINY), train=TrainConfig(decay_norm_and_bias=False)
    )  # type: ignore[arg-type]
    groups = TDSRecipe(cfg).param_groups(model)
    in_opt = {id(p) for g in groups for p in g["params"]}
    assert not in_opt & {id(p) for p in model.clip.parameters()}
    assert in_opt == {id(p) for p in model.parameters() if p.requires_grad}


def test_layer_by_layer_taps_equal_clip_hidden_states() -> None:
    model = _model().eval()
    images = torch.randn(3, 3, 32, 32)
    ref = model.clip(pixel_values=images, output_hidden_states=True).hidden_states
    h = model.clip_embed(images)
    torch.testing.assert_close(h, ref[0])
    for i in range(len(model.blocks)):
        h = model.clip_layer(i, h)
        torch.testing.assert_close(h, ref[i + 1])


def test_clip_never_records_a_graph() -> None:
    model = _model()
    h = model.clip_embed(torch.randn(2, 3, 32, 32))
    assert not h.requires_grad and model.clip_layer(0, h).grad_fn is None


def test_td_layer_mask_variants() -> None:
    assert td_layer_mask("all", 4) == [True] * 4
    assert td_layer_mask("first_half", 12) == [True] * 6 + [False] * 6
    assert td_layer_mask("second_half", 12) == [False] * 6 + [True] * 6
    assert td_layer_mask("none", 3) == [False] * 3
    assert td_layer_mask("0,2-3", 5) == [True, False, True, True, False]
    with pytest.raises(ModelBuildError, match="td_layers"):
        td_layer_mask("7", 4)
    with pytest.raises(ModelBuildError, match="td_layers"):
        td_layer_mask("half", 4)


def test_td_enablement_per_layer_in_model() -> None:
    model = _model(td_layers="first_half")
    assert [b.temporal.td is not None for b in model.side_blocks] == [True, True, False, False]
    model = _model(td_adapter=False)
    assert all(b.temporal.td is None for b in model.side_blocks)
    model = _model(td_reference="conv", td_kernel=5)
    td = model.side_blocks[0].temporal.td
    assert (
        td is not None
        and td.reference == "conv"
        and td.ref_conv is not None
        and td.ref_conv.shape[1] == 5
    )


def test_sme_disabled_with_one_local_frame() -> None:
    model = _model(num_local_frames=1)
    assert model.sme.diff_stem is None
    assert model(torch.randn(2, 4, 1, 3, 32, 32)).shape == (2, 6)


def test_grad_checkpointing_same_logits_and_grads() -> None:
    torch.manual_seed(0)
    m1 = _model()
    m2 = _model(grad_checkpointing=True)
    m2.load_state_dict(m1.state_dict())
    x = torch.randn(2, 4, 5, 3, 32, 32)
    y1, y2 = m1(x), m2(x)
    torch.testing.assert_close(y1, y2)
    y1.square().sum().backward()
    y2.square().sum().backward()
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        if p1.grad is not None:
            torch.testing.assert_close(p1.grad, p2.grad)


def test_b16_parameter_count_matches_public_code() -> None:
    # Counted from the authors' public code (side blocks, per-layer LN + Linear, shared position
    # embedding, RGB + 12-channel difference stems with BN, post-BN, fc): 24,224,526 trainable.
    with torch.device("meta"):
        model = tds_clip_b16(num_classes=174)
    trainable, total = count_parameters(model)
    assert trainable == 24_224_526
    assert total - trainable == count_parameters(model.clip)[1]


def test_unknown_backbone_is_a_clear_error() -> None:
    with pytest.raises(ModelBuildError, match=r"model\.backbone"):
        build_tds_clip(TDSModelConfig(backbone="vit-huge"))
    with pytest.raises(ModelBuildError, match=r"model\.clip_checkpoint"):
        build_tds_clip(TDSModelConfig(backbone="tiny", clip_checkpoint="/nonexistent/clip"))


def test_random_frozen_clip_is_a_function_of_the_config() -> None:
    # Checkpoints hold only trainable weights, so a checkpoint-less CLIP must rebuild identically.
    cfg = TDSModelConfig(backbone="tiny")
    torch.manual_seed(1)
    a = build_clip_vision(cfg)
    torch.manual_seed(2)
    b = build_clip_vision(cfg)
    c = build_clip_vision(dataclasses.replace(cfg, random_backbone_seed=1))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert any(
        not torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values())
    )
