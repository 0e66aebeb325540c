"""Frozen backbones compute their linear layers with ``sidetune.nn.Linear`` (oneDNN on the CPU)
and give the BLAS path's features to float32 rounding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sidetune.nn.linear as fast_linear
from sidetune.backbones import create_backbone, create_text_backbone
from sidetune.nn.fast import plain_paths
from tests.nn.matmul_counter import MatmulCounter


def _plain_linears(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if type(m) is nn.Linear]


@pytest.mark.parametrize("name", ["internvideo2-tiny", "clip-tiny"])
def test_video_backbone_features_equal_the_blas_path(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = create_backbone(name)
    assert _plain_linears(model) == []  # every nn.Linear became a sidetune Linear
    size = 28 if name.startswith("internvideo2") else 32
    clips = torch.randn(2, model.frames_per_clip, 3, size, size)
    with plain_paths():
        blas = model.forward_intermediates(clips, pool="mean")
    monkeypatch.setattr(fast_linear, "MIN_MACS", 0)  # tiny products take the oneDNN path too
    with MatmulCounter() as counter:
        onednn = model.forward_intermediates(clips, pool="mean")
    if fast_linear.onednn_available():
        assert "_linear_pointwise" in counter.ops
    torch.testing.assert_close(onednn, blas, rtol=1e-5, atol=1e-5)


def test_text_backbone_features_equal_the_blas_path(monkeypatch: pytest.MonkeyPatch) -> None:
    text = create_text_backbone("internvideo2-text-tiny")
    assert _plain_linears(text) == []
    batch = text.tokenize(["a man cooks in the kitchen", "the dogs run"])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with plain_paths():
        blas, _ = text.forward_intermediates(ids, mask, [-2, -1])
    monkeypatch.setattr(fast_linear, "MIN_MACS", 0)
    with MatmulCounter() as counter:
        onednn, _ = text.forward_intermediates(ids, mask, [-2, -1])
    if fast_linear.onednn_available():
        assert "_linear_pointwise" in counter.ops
    torch.testing.assert_close(onednn, blas, rtol=1e-5, atol=1e-5)
