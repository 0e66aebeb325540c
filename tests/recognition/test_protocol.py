"""The authors' test protocol: frame indices, local windows, resizing and crops (hand values)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sidetune.recognition.config import RecognitionEvalConfig
from sidetune.recognition.data import official_local_windows, official_test_indices
from sidetune.recognition.official_transforms import (
    OfficialEvalTransform,
    official_crop_offsets,
    resize_uint8,
    torchvision_resize_size,
)


def test_ssv2_indices_hand_values() -> None:
    # s = 49 / 8 = 6.125; round(i s) = 0 6 12 18 24 31 37 43 (24.5 -> 24: numpy halves to even)
    one = official_test_indices(50, 8, 1, "ssv2")
    assert one.tolist() == [[3, 9, 15, 21, 27, 34, 40, 46]]  # + int(6.125 / 2) = 3
    two = official_test_indices(
        50, 8, 2, "ssv2"
    )  # + int(6.125 / 3 * 1) = 2, int(6.125 / 3 * 2) = 4
    assert two.tolist() == [[2, 8, 14, 20, 26, 33, 39, 45], [4, 10, 16, 22, 28, 35, 41, 47]]


def test_ssv2_short_video_repeats_frames() -> None:
    # F = 5 < T = 8: s = 0.5, round(0.5 i) = 0 0 1 2 2 2 3 4, offset int(0.25) = 0
    assert official_test_indices(5, 8, 1, "ssv2").tolist() == [[0, 0, 1, 2, 2, 2, 3, 4]]
    assert official_test_indices(1, 8, 2, "ssv2").tolist() == [[0] * 8, [0] * 8]


def test_k400_indices_hand_values() -> None:
    assert official_test_indices(80, 8, 1, "k400").tolist() == [[0, 10, 20, 30, 40, 50, 60, 70]]
    # 4 clips: starts int(linspace(0, 9, 4)) = 0 3 6 9
    four = official_test_indices(80, 8, 4, "k400")
    assert four[:, 0].tolist() == [0, 3, 6, 9] and four[3].tolist() == [
        9,
        19,
        29,
        39,
        49,
        59,
        69,
        79,
    ]
    # 3 clips: linspace(0, 9, 3) = 0 4.5 9 -> 0 4 9
    assert official_test_indices(80, 8, 3, "k400")[:, 1].tolist() == [10, 14, 19]
    # short video: tick 0.75 -> int(0.75 i) = 0 0 1 2 3 3 4 5
    assert official_test_indices(6, 8, 1, "k400").tolist() == [[0, 0, 1, 2, 3, 3, 4, 5]]


def test_windows_frame_folders_clamp_and_videos_wrap() -> None:
    idx = np.array([0, 1, 8, 9])
    folder = official_local_windows(idx, 5, 10, wrap_start=False)
    assert folder.tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [6, 7, 8, 9, 9], [7, 8, 9, 9, 9]]
    video = official_local_windows(idx, 5, 10, wrap_start=True)  # decord: frame -2 is frame 8
    assert video.tolist() == [[8, 9, 0, 1, 2], [9, 0, 1, 2, 3], [6, 7, 8, 9, 9], [7, 8, 9, 9, 9]]
    assert official_local_windows(np.array([[4]]), 1, 10, True).tolist() == [[[4]]]


def test_crop_offsets_and_sizes() -> None:
    assert torchvision_resize_size(240, 427, [256, 320]) == (256, 320)  # aspect not kept
    assert torchvision_resize_size(240, 427, [256]) == (256, 455)  # int(256 * 427 / 240)
    assert torchvision_resize_size(427, 240, [256]) == (455, 256)
    # SSv2: 256 x 320 -> centre (16, 48); 3 crops x in {0, 96, 48}, y = 16
    assert official_crop_offsets(256, 320, 224, 1) == [(16, 48)]
    assert official_crop_offsets(256, 320, 224, 3) == [(16, 0), (16, 96), (16, 48)]
    # K400 landscape 256 x 455: w_step = 57 -> x in {0, 228, 114}; centre left round(115.5) = 116
    assert official_crop_offsets(256, 455, 224, 3) == [(16, 0), (16, 228), (16, 114)]
    assert official_crop_offsets(256, 455, 224, 1) == [(16, 116)]
    assert official_crop_offsets(256, 341, 224, 1) == [(16, 58)]  # round(58.5) = 58 (to even)


def test_bicubic_resize_follows_pil() -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    img = np.clip(np.cumsum(rng.integers(-3, 4, (60, 107, 3)), axis=1) + 128, 0, 255).astype(
        np.uint8
    )
    pil = np.asarray(Image.fromarray(img).resize((80, 64), Image.Resampling.BICUBIC)).astype(int)
    ours = (
        resize_uint8(torch.from_numpy(img)[None], (64, 80))[0].permute(1, 2, 0).numpy().astype(int)
    )
    diff = np.abs(pil - ours)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.02


def test_official_views_cut_the_expected_pixels() -> None:
    # a 256 x 320 clip whose pixel value is its column // 2 (no resize happens)
    col = (torch.arange(320) // 2).to(torch.uint8)
    frames = col.view(1, 1, 320, 1).expand(2, 256, 320, 3).contiguous()
    three = OfficialEvalTransform(224, 3, (256, 320))(frames)  # mean 0, std 1: values / 255
    assert three.shape == (3, 2, 3, 224, 224)
    left_cols = (three[:, 0, 0, 0, 0] * 255).round().tolist()
    assert left_cols == [0.0, 48.0, 24.0]  # columns 0, 96, 48
    one = OfficialEvalTransform(224, 1, (256, 320))(frames)
    assert (one[0, 0, 0, 0, 0] * 255).round().item() == 24.0  # column 48


def test_protocol_scales() -> None:
    assert RecognitionEvalConfig(protocol="ssv2").resolved_scale(224) == [256, 320]
    assert RecognitionEvalConfig(protocol="k400").resolved_scale(224) == [256]
    assert RecognitionEvalConfig(protocol="k400").resolved_scale(336) == [336]
    with pytest.raises(ValueError, match="unknown test protocol"):
        official_test_indices(10, 8, 1, "tsn")
