"""CLIP through transformers: intermediates, CLS-path re-use, local loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import CLIPModel

from sidetune.backbones import CheckpointError, create_backbone, create_text_backbone
from sidetune.backbones.clip import CLIPText, CLIPVideo, clip_config


def test_video_intermediates_and_cls_path_reuse() -> None:
    model = create_backbone("clip-tiny", frames_per_clip=2)
    assert isinstance(model, CLIPVideo) and model.depth == 3
    clips = torch.randn(3, 2, 3, 32, 32)
    feats = model.forward_intermediates(clips, [1, 2, 3])
    assert feats.shape == (3, 3, 16) and model.feature_dim("adaptive") == 16
    assert model.forward_intermediates(clips, [0, -1], pool="mean").shape == (2, 3, 32)
    # adaptive on the last layer == CLIP's own image embedding, averaged over the clip's frames
    out = model.vision(pixel_values=clips.flatten(0, 1))
    own = model.visual_projection(out.pooler_output).view(3, 2, -1).mean(1)
    torch.testing.assert_close(feats[-1], own)
    cls = model.forward_intermediates(clips, [-1], pool="cls")[0]
    torch.testing.assert_close(cls, out.last_hidden_state[:, 0].view(3, 2, -1).mean(1))
    assert all(not p.requires_grad for p in model.parameters())


def test_text_intermediates_and_projection_reuse() -> None:
    text = create_text_backbone("clip-tiny")
    assert isinstance(text, CLIPText)
    ids = torch.tensor([[62, 5, 6, 63, 0], [62, 7, 63, 0, 0]])
    mask = (ids != 0).long()
    hidden, m = text.forward_intermediates(ids, mask, [-1])
    assert hidden.shape == (1, 2, 5, 32) and m.tolist() == mask.bool().tolist()
    projected, _ = text.forward_intermediates(ids, mask, [-1], project=True)
    out = text.text(input_ids=ids, attention_mask=mask)
    # final hidden state + frozen final LN + projection == CLIP's projected token features
    torch.testing.assert_close(projected[0], text.text_projection(out.last_hidden_state))


def test_local_directory_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = CLIPModel(clip_config("clip-tiny")).eval()
    src.save_pretrained(tmp_path)
    loaded = create_backbone("clip-tiny", checkpoint=str(tmp_path))
    assert (
        isinstance(loaded, CLIPVideo) and loaded.load_report is not None and loaded.load_report.ok
    )
    clips = torch.randn(2, 1, 3, 32, 32)
    out = src.vision_model(pixel_values=clips.flatten(0, 1))
    torch.testing.assert_close(
        loaded.forward_intermediates(clips, [-1])[0], src.visual_projection(out.pooler_output)
    )
    with pytest.raises(CheckpointError, match="expected a local Hugging Face CLIP directory"):
        create_backbone("clip-vit-b16", checkpoint=str(tmp_path / "missing"))


def test_named_variants_have_paper_sizes() -> None:
    b16: Any = clip_config("clip-vit-b16")
    l14: Any = clip_config("clip-vit-l14")
    b32: Any = clip_config("clip-vit-b32")
    assert (b16.vision_config.patch_size, b16.vision_config.hidden_size, b16.projection_dim) == (
        16,
        768,
        512,
    )
    assert (
        l14.vision_config.patch_size,
        l14.vision_config.num_hidden_layers,
        l14.projection_dim,
    ) == (14, 24, 768)
    assert b32.vision_config.patch_size == 32
