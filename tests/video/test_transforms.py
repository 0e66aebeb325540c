"""Resize / crop / normalise in torch."""

from __future__ import annotations

import torch

from sidetune.video.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VideoTransform,
    center_crop,
    resize_short_side,
    to_float_chw,
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
