"""InternVideo2 vision encoder: intermediates, pooling (Eq. 15), pos-embed, checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from sidetune.backbones import BackboneError, CheckpointError, create_backbone, list_backbones
from sidetune.backbones.internvideo2 import (
    InternVideo2Backbone,
    InternVideo2Vision,
    internvideo2_1b_config,
    internvideo2_6b_config,
    internvideo2_tiny_config,
    interpolate_pos_embed,
)
from sidetune.utils.params import count_parameters


def _clips(b: int = 2, n: int = 4, size: int = 28) -> torch.Tensor:
    return torch.randn(b, n, 3, size, size)


def test_forward_intermediates_shapes_and_pooling() -> None:
    model = create_backbone("internvideo2-tiny")
    clips = _clips()
    adaptive = model.forward_intermediates(clips)  # default: last 4 of 4 blocks
    assert adaptive.shape == (4, 2, 32) and model.feature_dim("adaptive") == 32
    assert model.forward_intermediates(clips, [2, -1], pool="cls").shape == (2, 2, 64)
    assert model.forward_intermediates(clips, [0], pool="mean").shape == (1, 2, 64)
    # distinct layers give distinct features
    assert not torch.allclose(adaptive[0], adaptive[-1])
    with pytest.raises(BackboneError, match="out of range"):
        model.forward_intermediates(clips, [5])
    with pytest.raises(BackboneError, match="unknown pooling"):
        model.forward_intermediates(clips, pool="max")  # type: ignore[arg-type]


def test_adaptive_pool_on_last_layer_is_the_models_clip_embedding() -> None:
    # Eq. 15 with l = L reproduces the released model's own pooled output.
    model = create_backbone("internvideo2-tiny")
    assert isinstance(model, InternVideo2Backbone)
    clips = _clips()
    last = model.forward_intermediates(clips, [-1])[0]
    own = model.encoder(clips.permute(0, 2, 1, 3, 4))
    torch.testing.assert_close(last, own)
    # the pool re-used on an intermediate layer equals pooling that layer's tokens by hand
    hidden = model.encoder.hidden_states(clips.permute(0, 2, 1, 3, 4), [2])[0]
    torch.testing.assert_close(
        model.forward_intermediates(clips, [2])[0], model.encoder.clip_projector(hidden)
    )
    cls = model.forward_intermediates(clips, [2], pool="cls")[0]
    mean = model.forward_intermediates(clips, [2], pool="mean")[0]
    torch.testing.assert_close(cls, hidden[:, 0])
    torch.testing.assert_close(mean, hidden[:, 1:].mean(1))


def test_blocks_past_the_deepest_layer_are_not_run() -> None:
    model = create_backbone("internvideo2-tiny")
    assert isinstance(model, InternVideo2Backbone)

    def boom(*_: object) -> None:
        raise AssertionError("block 3 should not run")

    model.encoder.blocks[2].forward = boom  # type: ignore[method-assign]
    assert model.forward_intermediates(_clips(), [1, 2]).shape == (2, 2, 32)


def test_frozen_and_real_size_configs() -> None:
    model = create_backbone("internvideo2-tiny")
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    assert {"internvideo2-1b", "internvideo2-6b", "clip-vit-b16"} <= set(list_backbones())
    with pytest.raises(BackboneError, match="unknown backbone"):
        create_backbone("resnet50")
    # Real sizes, on the meta device (no memory): InternVideo2-1B ~ 1.0B, 6B ~ 5.9B parameters.
    with torch.device("meta"):
        one_b: Any = InternVideo2Vision(internvideo2_1b_config())
        six_b: Any = InternVideo2Vision(internvideo2_6b_config())
    assert one_b.blocks[0].mlp.fc1.out_features == 6144
    assert 0.95e9 < count_parameters(one_b)[1] < 1.1e9
    assert 5.5e9 < count_parameters(six_b)[1] < 6.1e9
    assert one_b.clip_projector.cross_attn.proj.out_features == 768
    assert six_b.blocks[0].attn.qkv.out_features == 3 * 3200


def test_pos_embed_temporal_interpolation() -> None:
    # A table that is constant in space and linear in time stays linear after resizing.
    t, g, d = 4, 2, 3
    ramp = torch.arange(t, dtype=torch.float32).repeat_interleave(g * g)
    pos = torch.cat(
        [torch.full((1, 1, d), 7.0), ramp.view(1, -1, 1).expand(1, t * g * g, d)], dim=1
    )
    out = interpolate_pos_embed(pos, t, 8, g)
    assert out.shape == (1, 1 + 8 * g * g, d)
    assert out[0, 0].eq(7.0).all()
    per_frame = out[0, 1:, 0].view(8, g * g)[:, 0]
    expected = torch.clamp((torch.arange(8) + 0.5) / 2 - 0.5, 0, 3)
    torch.testing.assert_close(per_frame, expected)
    torch.testing.assert_close(interpolate_pos_embed(pos, t, t, g), pos)
    # a model built for 4 frames accepts 8-frame clips (interpolated on the fly) and 1-frame images
    model = create_backbone("internvideo2-tiny")
    assert model.forward_intermediates(_clips(n=8)).shape == (4, 2, 32)
    assert model.forward_intermediates(_clips(n=1)).shape == (4, 2, 32)


def _released_layout(model: InternVideo2Backbone) -> dict[str, torch.Tensor]:
    """A stage-2 style state dict: vision_encoder.* + text/other keys + distillation heads."""
    sd = {f"vision_encoder.{k}": v.clone() for k, v in model.encoder.state_dict().items()}
    sd["vision_encoder.clip_pos_embed"] = torch.zeros_like(model.encoder.pos_embed)
    sd["vision_encoder.clip_decoder.0.head.weight"] = torch.zeros(8, 64)
    sd["vision_encoder.final_clip_decoder.head.weight"] = torch.zeros(8, 32)
    sd["text_encoder.bert.embeddings.word_embeddings.weight"] = torch.zeros(5, 4)
    sd["vision_proj.weight"] = torch.zeros(16, 32)
    return sd


@pytest.mark.parametrize("fmt", ["pt-module", "pt-model-ddp", "safetensors"])
def test_checkpoint_round_trip(tmp_path: Path, fmt: str) -> None:
    src = create_backbone("internvideo2-tiny")
    assert isinstance(src, InternVideo2Backbone)
    sd = _released_layout(src)
    if fmt == "pt-module":
        path = tmp_path / "iv2.pt"
        torch.save({"module": sd, "epoch": 3}, path)
    elif fmt == "pt-model-ddp":
        path = tmp_path / "iv2.pth"
        torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, path)
    else:
        path = tmp_path / "iv2.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    torch.manual_seed(123)  # the loaded model must not depend on its own init
    loaded = create_backbone("internvideo2-tiny", checkpoint=str(path))
    assert isinstance(loaded, InternVideo2Backbone)
    report = loaded.load_report
    assert report is not None and report.ok
    assert "clip_decoder.0.head.weight" in report.ignored and "clip_pos_embed" in report.ignored
    assert report.loaded == len(src.encoder.state_dict())
    clips = _clips()
    torch.testing.assert_close(
        loaded.forward_intermediates(clips), src.forward_intermediates(clips)
    )


def test_checkpoint_with_other_frame_count_is_adapted(tmp_path: Path) -> None:
    src = create_backbone("internvideo2-tiny", frames_per_clip=8)
    assert isinstance(src, InternVideo2Backbone)
    path = tmp_path / "f8.pt"
    torch.save({f"vision_encoder.{k}": v for k, v in src.encoder.state_dict().items()}, path)
    loaded = create_backbone(  # built for 4 frames, from an 8-frame table
        "internvideo2-tiny", checkpoint=str(path), checkpoint_frames=8
    )
    assert isinstance(loaded, InternVideo2Backbone) and loaded.load_report is not None
    assert any(
        a.startswith("pos_embed (1, 33, 64)->(1, 17, 64)") for a in loaded.load_report.adapted
    )
    # The frame count is never guessed from the length: 32 positions are not 4 square frames.
    with pytest.raises(CheckpointError, match=r"pos_embed \(1, 33, 64\).*checkpoint_frames=4"):
        create_backbone("internvideo2-tiny", checkpoint=str(path))


def test_key_mismatch_errors_name_file_and_keys(tmp_path: Path) -> None:
    src = create_backbone("internvideo2-tiny")
    assert isinstance(src, InternVideo2Backbone)
    sd = _released_layout(src)
    del sd["vision_encoder.blocks.1.attn.qkv.weight"]
    path = tmp_path / "broken.pt"
    torch.save(sd, path)
    with pytest.raises(
        CheckpointError, match=r"broken\.pt: 1 weights missing.*blocks\.1\.attn\.qkv\.weight"
    ):
        create_backbone("internvideo2-tiny", checkpoint=str(path))
    # not strict: loads the rest and reports the gap
    lenient = create_backbone("internvideo2-tiny", checkpoint=str(path), strict=False)
    assert isinstance(lenient, InternVideo2Backbone) and lenient.load_report is not None
    assert lenient.load_report.missing == ["blocks.1.attn.qkv.weight"]
    # a wrong layout (e.g. timm-style names) says what it found instead
    renamed = {k.replace("attn.qkv", "attn.in_proj"): v for k, v in _released_layout(src).items()}
    torch.save(renamed, tmp_path / "renamed.pt")
    with pytest.raises(CheckpointError, match=r"missing.*unused keys such as.*attn\.in_proj"):
        create_backbone("internvideo2-tiny", checkpoint=str(tmp_path / "renamed.pt"))
    # a different model size: shape mismatch names the tensor
    big = InternVideo2Vision(internvideo2_tiny_config(embed_dim=128, clip_embed_dim=32))
    torch.save(big.state_dict(), tmp_path / "big.pt")
    with pytest.raises(CheckpointError, match=r"big\.pt: shape mismatch.*cls_token"):
        create_backbone("internvideo2-tiny", checkpoint=str(tmp_path / "big.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt: cannot read checkpoint"):
        create_backbone("internvideo2-tiny", checkpoint=str(tmp_path / "junk.pt"))


def test_bf16_load_skips_random_init(tmp_path: Path) -> None:
    src = create_backbone("internvideo2-tiny")
    assert isinstance(src, InternVideo2Backbone)
    path = tmp_path / "iv2.pt"
    torch.save({f"vision_encoder.{k}": v for k, v in src.encoder.state_dict().items()}, path)
    half = create_backbone("internvideo2-tiny", checkpoint=str(path), dtype=torch.bfloat16)
    assert next(half.parameters()).dtype == torch.bfloat16
    clips = _clips()
    out = half.forward_intermediates(clips.bfloat16()).float()
    torch.testing.assert_close(out, src.forward_intermediates(clips), atol=0.1, rtol=0.05)
