"""The authors' data pipeline (``utils/Augmentation.py``, ``test_vision.py``) in torch.

Train (``OfficialTrainTransform``), for every frame of a clip with one draw per clip:

1. RandAugment ``rand-m7-n4-mstd0.5-inc1`` on the decoded frames (Something-Something only);
2. ``GroupScale``: bicubic resize to 256x320 (SSv1/SSv2, aspect not kept) or shorter side 256;
3. ``GroupRandomSizedCrop(224)``: area U(0.08, 1), aspect U(3/4, 4/3) (uniform, not log),
   width and height swapped with p = 0.5, 10 tries, bilinear resize to 224; else
   shorter side 224 + a random 224 crop;
4. horizontal flip p = 0.5 (Something-Something: with the label swap 86<->87, 93<->94,
   166<->167; Kinetics: labels kept);
5. grayscale with p (0 for Something-Something, 0.2 for Kinetics); normalise.

Test (``OfficialEvalTransform``): resize, then 1 or 3 fixed crops.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from sidetune.recognition.rand_augment import RandAugmentPolicy, grey
from sidetune.recognition.transforms import EvalTransform, normalize


def resize_uint8(frames: Tensor, size: tuple[int, int], mode: str = "bicubic") -> Tensor:
    """uint8 (F, H, W, 3) -> uint8 (F, 3, h, w), antialiased as PIL's ``resize`` (PIL's bicubic
    kernel; 8-bit between the two passes, within one grey level of PIL on 99.5 % of pixels)."""
    x = frames.permute(0, 3, 1, 2).contiguous()
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False)


def torchvision_resize_size(h: int, w: int, scale: Sequence[int]) -> tuple[int, int]:
    """Output ``(h, w)`` of ``torchvision.transforms.Resize(scale)``: ``(H, W)`` as given, or the
    shorter side to ``scale[0]`` with the longer one truncated (``int(s * long / short)``)."""
    if len(scale) == 2:
        return int(scale[0]), int(scale[1])
    s = int(scale[0])
    if h <= w:
        return s, int(s * w / h)
    return int(s * h / w), s


def official_crop_offsets(h: int, w: int, size: int, num_crops: int) -> list[tuple[int, int]]:
    """``(top, left)`` of the authors' test crops on an ``h x w`` frame.

    1 crop: ``GroupCenterCrop`` (torchvision ``CenterCrop``, Python rounding). 3 crops:
    ``GroupFullResSample`` with ``w_step = (w - S) // 4``, ``h_step = (h - S) // 4``: left
    ``(0, 2 h_step)``, right ``(4 w_step, 2 h_step)``, centre ``(2 w_step, 2 h_step)`` (x, y).
    """
    if num_crops == 1:
        return [
            (round((h - size) / 2.0), round((w - size) / 2.0))
        ]  # Python rounding, halves to even
    if num_crops != 3:
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    ws, hs = (w - size) // 4, (h - size) // 4
    return [(2 * hs, 0), (2 * hs, 4 * ws), (2 * hs, 2 * ws)]


class OfficialEvalTransform(EvalTransform):
    """The authors' test views (``test_vision.py``): resize, then 1 or 3 fixed crops, normalise.

    ``scale``: ``(256, 320)`` for Something-Something (``GroupScale((256, 320))``, aspect not
    kept) or ``(256,)`` for Kinetics (shorter side 256). Bicubic, as their ``GroupScale``.
    ``__call__(frames uint8 (F, H, W, 3)) -> float (num_crops, F, 3, S, S)``.
    """

    def __init__(
        self,
        size: int,
        num_crops: int = 1,
        scale: Sequence[int] = (256, 320),
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        interpolation: str = "bicubic",
    ) -> None:
        super().__init__(size, num_crops, 0, mean, std)
        if len(scale) not in (1, 2):
            raise ValueError(f"scale must be [short_side] or [height, width], got {list(scale)}")
        self.scale = tuple(int(s) for s in scale)
        self.interpolation = interpolation

    def __call__(self, frames: Tensor) -> Tensor:
        h, w = torchvision_resize_size(frames.shape[1], frames.shape[2], self.scale)
        if min(h, w) < self.size:
            raise ValueError(f"resized frames {h}x{w} are smaller than the {self.size} crop")
        x = resize_uint8(frames, (h, w), self.interpolation).float().div_(255.0)
        s = self.size
        crops = [
            x[..., t : t + s, c : c + s] for t, c in official_crop_offsets(h, w, s, self.num_crops)
        ]
        return torch.stack([normalize(c, self.mean, self.std) for c in crops])


def official_sized_crop_params(
    h: int, w: int, rng: random.Random
) -> tuple[int, int, int, int] | None:
    """``GroupRandomSizedCrop``'s ``(top, left, height, width)``, or None for its fallback."""
    for _ in range(10):
        target = rng.uniform(0.08, 1.0) * (h * w)
        aspect = rng.uniform(3.0 / 4.0, 4.0 / 3.0)
        cw = round(math.sqrt(target * aspect))
        ch = round(math.sqrt(target / aspect))
        if rng.random() < 0.5:
            cw, ch = ch, cw
        if cw <= w and ch <= h:
            left = rng.randint(0, w - cw)
            top = rng.randint(0, h - ch)
            return top, left, ch, cw
    return None


class OfficialTrainTransform:
    """The authors' training augmentation (see the module docstring).

    ``__call__(frames uint8 (F, H, W, 3), label) -> (float (F, 3, S, S), label)``.
    """

    def __init__(
        self,
        size: int = 224,
        scale: Sequence[int] = (256, 320),
        rand_augment: RandAugmentPolicy | None = None,
        flip_map: dict[int, int] | None = None,
        flip: bool = True,
        grayscale_prob: float = 0.0,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        rng: random.Random | None = None,
    ) -> None:
        self.size = size
        self.scale = tuple(int(s) for s in scale)
        self.rand_augment = rand_augment
        self.flip_map = flip_map or {}
        self.flip = flip
        self.grayscale_prob = grayscale_prob
        self.mean, self.std = mean, std
        self.rng = rng or random.Random()

    def __call__(self, frames: Tensor, label: int) -> tuple[Tensor, int]:
        rng = self.rng
        x = frames.permute(0, 3, 1, 2).contiguous()  # uint8 (F, 3, H, W)
        if self.rand_augment is not None:
            x = self.rand_augment(x, rng)
        h, w = torchvision_resize_size(x.shape[-2], x.shape[-1], self.scale)
        x = resize_uint8(x.permute(0, 2, 3, 1), (h, w), "bicubic")
        s = self.size
        box = official_sized_crop_params(h, w, rng)
        if box is not None:
            top, left, ch, cw = box
            x = x[..., top : top + ch, left : left + cw].permute(0, 2, 3, 1)
            x = resize_uint8(x, (s, s), "bilinear")
        else:  # GroupScale(S) (bilinear) + GroupRandomCrop(S)
            h2, w2 = torchvision_resize_size(h, w, (s,))
            x = resize_uint8(x.permute(0, 2, 3, 1), (h2, w2), "bilinear")
            left, top = rng.randint(0, w2 - s), rng.randint(0, h2 - s)
            x = x[..., top : top + s, left : left + s]
        if self.flip and rng.random() < 0.5:
            x = x.flip(-1)
            label = self.flip_map.get(label, label)
        if self.grayscale_prob > 0 and rng.random() < self.grayscale_prob:
            x = grey(x).expand_as(x)
        return normalize(x.float().div_(255.0), self.mean, self.std), label
