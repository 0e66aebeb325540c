"""Image preprocessing in torch (no torchvision): resize, centre crop, normalise.

Frames arrive as uint8 ``(H, W, 3)`` (one frame) or ``(..., H, W, 3)`` (a stack) and leave as
float ``(..., 3, S, S)``. Three presets (:data:`TRANSFORM_KINDS`, :func:`video_transform`):

* ``"eval"`` — InternVideo2's retrieval-eval / test transform (``dataset/__init__.py``
  ``get_test_transform``): the whole frame squashed to ``S x S`` with bicubic interpolation,
  no antialiasing, on the uint8 values, clamped and rounded back to uint8 (torchvision 0.14
  ``Resize`` on a uint8 tensor), then ``/255`` and ImageNet normalisation.
* ``"demo"`` — InternVideo2's demo (``demo/utils.py``): ``cv2.resize`` of the whole frame,
  bilinear, no antialiasing, uint8 result. (cv2 uses fixed-point weights: on frames of two
  real videos, 9-11 % of our values differ from ``cv2.resize``'s by one grey level, none more.)
* ``"crop"`` — shorter side to ``S`` (antialiased bicubic) then a centre crop (CLIP's
  preprocessing; drops the sides of a wide frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

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


def resize_short_side(
    images: torch.Tensor,
    size: int,
    mode: str = "bicubic",
    antialias: bool = True,
    max_value: float = 1.0,
) -> torch.Tensor:
    """Resize ``(..., C, H, W)`` so the shorter side is ``size`` (aspect ratio kept)."""
    h, w = images.shape[-2:]
    if min(h, w) == size:
        return images
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    return resize(images, (new_h, new_w), mode, antialias, max_value)


def resize(
    images: torch.Tensor,
    hw: tuple[int, int],
    mode: str = "bicubic",
    antialias: bool = True,
    max_value: float = 1.0,
) -> torch.Tensor:
    """Resize ``(..., C, H, W)`` to exactly ``hw``; ``antialias`` low-passes when shrinking.

    Bicubic overshoots, so the result is clamped to ``[0, max_value]`` (the input's range).
    """
    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:])
    smooth = mode in ("bilinear", "bicubic")
    out = F.interpolate(
        flat,
        size=hw,
        mode=mode,
        align_corners=False if smooth else None,
        antialias=antialias and smooth,
    )
    if mode == "bicubic":
        out = out.clamp_(0.0, max_value)
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


TRANSFORM_KINDS: dict[str, dict[str, Any]] = {
    "eval": {"crop": False, "mode": "bicubic", "antialias": False, "quantize": True},
    "demo": {"crop": False, "mode": "bilinear", "antialias": False, "quantize": True},
    "crop": {"crop": True, "mode": "bicubic", "antialias": True, "quantize": False},
}


@dataclass(frozen=True)
class VideoTransform:
    """uint8 ``(..., H, W, 3)`` -> normalised float ``(..., 3, size, size)``.

    ``crop=True``: shorter side to ``size`` then centre crop;
    ``crop=False``: squash the whole frame to ``size x size``.
    ``quantize``: resize the 0-255 values and round them to integers before ``/255`` (what
    torchvision / cv2 do on uint8 images). See :data:`TRANSFORM_KINDS` for the presets.
    """

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop: bool = True
    mode: str = "bicubic"
    antialias: bool = True
    quantize: bool = False

    @property
    def kind(self) -> str:
        """The preset this transform equals (``"eval"`` / ``"demo"`` / ``"crop"``), else ``"custom"``."""
        for name, fields in TRANSFORM_KINDS.items():
            if all(getattr(self, k) == v for k, v in fields.items()):
                return name
        return "custom"

    def preset(self, kind: str) -> VideoTransform:
        """The same size / normalisation with the resize of preset ``kind``."""
        if kind not in TRANSFORM_KINDS:
            raise ValueError(
                f"unknown frame transform {kind!r} (choose from {', '.join(TRANSFORM_KINDS)})"
            )
        return replace(self, **TRANSFORM_KINDS[kind])

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.shape[-1] != 3:
            raise ValueError(
                f"expected channels-last RGB frames (..., H, W, 3), got {tuple(frames.shape)}"
            )
        if self.quantize:  # resize the uint8 values, round back to uint8, then scale
            x = frames.movedim(-1, -3).float()
            x = self._resize(x, 255.0).round_().div_(255.0)
        else:
            x = self._resize(to_float_chw(frames), 1.0)
        return normalize(x, self.mean, self.std)

    def _resize(self, x: torch.Tensor, max_value: float) -> torch.Tensor:
        if self.crop:
            x = resize_short_side(x, self.size, self.mode, self.antialias, max_value)
            return center_crop(x, self.size)
        if x.shape[-2:] == (self.size, self.size):
            return x
        return resize(x, (self.size, self.size), self.mode, self.antialias, max_value)


def video_transform(
    kind: str,
    size: int = 224,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> VideoTransform:
    """A preset transform: ``"eval"`` | ``"demo"`` | ``"crop"`` (see the module docstring)."""
    return VideoTransform(size=size, mean=mean, std=std).preset(kind)
