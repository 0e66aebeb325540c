"""Image preprocessing in torch (no torchvision): resize, centre crop, normalise.

Frames arrive as uint8 ``(H, W, 3)`` (one frame) or ``(..., H, W, 3)`` (a stack) and leave as
float ``(..., 3, S, S)``. The resize keeps the aspect ratio (shorter side to ``size``) and uses
antialiased bicubic interpolation, as the CLIP / InternVideo2 preprocessors do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_float_chw(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., H, W, 3)`` -> float32 ``(..., 3, H, W)`` in [0, 1]."""
    if frames.shape[-1] != 3:
        raise ValueError(
            f"expected channels-last RGB frames (..., H, W, 3), got {tuple(frames.shape)}"
        )
    return frames.movedim(-1, -3).float().div_(255.0)


def resize_short_side(images: torch.Tensor, size: int, mode: str = "bicubic") -> torch.Tensor:
    """Resize ``(..., C, H, W)`` so the shorter side is ``size`` (aspect ratio kept)."""
    h, w = images.shape[-2:]
    if min(h, w) == size:
        return images
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    return resize(images, (new_h, new_w), mode)


def resize(images: torch.Tensor, hw: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resize ``(..., C, H, W)`` to exactly ``hw`` with antialiasing (when shrinking)."""
    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:])
    align = False if mode in ("bilinear", "bicubic") else None
    out = F.interpolate(
        flat, size=hw, mode=mode, align_corners=align, antialias=mode in ("bilinear", "bicubic")
    )
    if mode == "bicubic":  # bicubic overshoots; keep the [0, 1] range of the input
        out = out.clamp_(0.0, 1.0)
    return out.reshape(*lead, *out.shape[-3:])


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop ``(..., C, H, W)`` to ``(..., C, size, size)``; needs ``H, W >= size``."""
    h, w = images.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from {h}x{w}")
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top : top + size, left : left + size]


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel on ``(..., 3, H, W)``."""
    m = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images - m) / s


@dataclass(frozen=True)
class VideoTransform:
    """uint8 ``(..., H, W, 3)`` -> normalised float ``(..., 3, size, size)``.

    ``crop=True``: shorter side to ``size`` then centre crop (default);
    ``crop=False``: squash the whole frame to ``size x size`` (InternVideo2's own demo does this).
    """

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop: bool = True
    mode: str = "bicubic"

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        x = to_float_chw(frames)
        if self.crop:
            x = center_crop(resize_short_side(x, self.size, self.mode), self.size)
        else:
            x = resize(x, (self.size, self.size), self.mode)
        return normalize(x, self.mean, self.std)
