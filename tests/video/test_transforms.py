"""Resize / crop / normalise in torch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sidetune.video.decode import read_frames
from sidetune.video.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VideoTransform,
    center_crop,
    normalize,
    resize_short_side,
    to_float_chw,
    video_transform,
)


def test_video_transform_shapes_and_values() -> None:
    frames = torch.zeros(2, 4, 48, 64, 3, dtype=torch.uint8)
    frames[..., 0] = 255  # pure red
    out = VideoTransform(size=32)(frames)
    assert out.shape == (2, 4, 3, 32, 32)
    expected = torch.tensor(
        [(1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], -IMAGENET_MEAN[1] / IMAGENET_STD[1]]
    )
    torch.testing.assert_close(out[..., 0, :, :].mean(), expected[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(out[..., 1, :, :].mean(), expected[1], atol=1e-4, rtol=0)
    squashed = VideoTransform(size=16, crop=False)(frames[0, 0])
    assert squashed.shape == (3, 16, 16)


def test_center_crop_keeps_the_middle() -> None:
    img = torch.zeros(1, 3, 10, 20)
    img[..., :, 5:15] = 1.0  # a central band 10 wide
    x = center_crop(resize_short_side(img, 10), 10)
    assert x.shape == (1, 3, 10, 10)
    assert x.min() == 1.0
    assert to_float_chw(torch.full((2, 2, 3), 255, dtype=torch.uint8)).max() == 1.0


# --- the official InternVideo2 resizes (hand-derived) ---------------------------------------

ROW = [0, 10, 20, 30, 200, 210, 220, 254]  # one row of an 4x8 grey frame


def _grey(row: list[int], height: int = 4) -> torch.Tensor:
    x = torch.tensor(row, dtype=torch.uint8).view(1, -1, 1).expand(height, -1, 3)
    return x.contiguous()


def _normalised(values: list[float]) -> torch.Tensor:
    x = torch.tensor(values).div(255.0).view(1, 1, -1).expand(3, 4, -1)
    return normalize(x, IMAGENET_MEAN, IMAGENET_STD)


def test_eval_transform_is_bicubic_without_antialias_rounded_to_uint8() -> None:
    # 8 -> 4 columns: output i samples x = 2i + 0.5, taps 2i-1 .. 2i+2 (clamped) with the
    # a = -0.75 cubic weights at t = 1/2: (-3/32, 19/32, 19/32, -3/32). Rows are unchanged.
    #   i=0: 19/32*(0+10) - 3/32*(0+20) = 4.0625 -> 4;  i=1: 19/32*50 - 3/32*210 = 10
    #   i=2: 19/32*410 - 3/32*250 = 220;                i=3: 19/32*474 - 3/32*464 = 237.94 -> 238
    out = video_transform("eval", size=4)(_grey(ROW))
    torch.testing.assert_close(out, _normalised([4, 10, 220, 238]), atol=1e-6, rtol=0)
    # Antialiasing (a wider kernel when shrinking) would give other values: it is off.
    smooth = VideoTransform(size=4, crop=False)(_grey(ROW))
    assert not torch.allclose(smooth, out, atol=1e-3)


def test_demo_transform_is_bilinear_and_crop_keeps_the_centre() -> None:
    demo = video_transform("demo", size=4)(_grey(ROW))  # the mean of each column pair
    torch.testing.assert_close(demo, _normalised([5, 25, 205, 237]), atol=1e-6, rtol=0)
    crop = video_transform("crop", size=4)(_grey(ROW))  # no resize, the 4 middle columns
    torch.testing.assert_close(crop, _normalised([20, 30, 200, 210]), atol=1e-6, rtol=0)
    assert video_transform("eval").kind == "eval" and VideoTransform().kind == "crop"
    assert VideoTransform(quantize=True).kind == "custom"


def test_eval_keeps_the_whole_frame_of_a_real_wide_video() -> None:
    from tests.shared_data import shared_path

    frames = read_frames(shared_path("data", "videos", "bikes.mp4"), [0, 50])  # 640x272
    assert frames.shape == (2, 272, 640, 3)
    out = video_transform("eval")(frames)
    assert out.shape == (2, 3, 224, 224)
    # the official recipe, step by step: uint8 -> float, bicubic to 224x224 without
    # antialiasing, clamp to [0, 255], round, /255, ImageNet normalisation
    x = F.interpolate(
        frames.permute(0, 3, 1, 2).float(), (224, 224), mode="bicubic", align_corners=False
    )
    want = normalize(x.clamp(0, 255).round() / 255.0, IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=0)
    # a centre crop drops 57% of this 2.35:1 frame: its first column is the frame's x ~ 184
    crop = video_transform("crop")(frames)
    assert not torch.allclose(crop[..., :8], out[..., :8], atol=0.1)
