"""Clip augmentations in torch (no torchvision): one set of random parameters per clip.

Input clips are uint8 ``(F, H, W, 3)`` (F = T * n frames: every local frame of every
segment); outputs are float ``(F, 3, S, S)`` normalised with the CLIP mean / std. Every frame of a
clip gets the same crop, flip, colour and geometric parameters, so temporal differences (the
SME-Adapter's input) measure motion, not augmentation noise.

Horizontal flips change the meaning of direction classes ("Pushing something from left to
right"): :func:`flip_label_map` builds the swap table from class names (left <-> right) or from
explicit id pairs, and :class:`TrainTransform` returns the swapped label with the flipped clip.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# Something-Something V2 classes that a horizontal flip turns into each other, by the official
# label ids (something-something-v2-labels.json; the usual sth labels CSV has the same ids):
# Pulling [something] from left to right / right to left, Pushing ... left to right / right to
# left, Turning the camera left / right while filming [something].
SSV2_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((86, 87), (93, 94), (166, 167))

_LEFT_RIGHT = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def _swap_left_right(name: str) -> str:
    def repl(m: re.Match[str]) -> str:
        word = m.group(0)
        other = "right" if word.lower() == "left" else "left"
        return other.capitalize() if word[0].isupper() else other

    return _LEFT_RIGHT.sub(repl, name)


def flip_label_map(
    names: Sequence[str] | None = None, pairs: Sequence[Sequence[int]] = ()
) -> dict[int, int]:
    """Label swap table for horizontal flips: ``{id: id_after_flip}`` (only changed ids).

    By name: a class whose name, with every whole word "left" / "right" exchanged, is another
    class's name swaps with it. For Something-Something V2 this pairs "Pushing something from left
    to right" / "... right to left", "Pulling something from left to right" / "... right to left"
    and "Turning the camera left while filming something" / "... right ...", and the same names
    with ``[something]`` brackets (labels.json spelling) -- SSv1 names match as well. Names
    without a mirrored partner keep their label. ``pairs`` adds explicit ``[a, b]`` swaps.
    """
    mapping: dict[int, int] = {}
    if names:
        index = {n.strip().lower(): i for i, n in enumerate(names)}
        for i, n in enumerate(names):
            j = index.get(_swap_left_right(n.strip()).lower())
            if j is not None and j != i:
                mapping[i] = j
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"flip pair {list(pair)} must have exactly two class ids")
        a, b = int(pair[0]), int(pair[1])
        mapping[a], mapping[b] = b, a
    return mapping


# ---------------------------------------------------------------------------------------------
# geometric helpers


def resize_short_side(x: Tensor, size: int) -> Tensor:
    """x: (F, 3, H, W) float -> shorter side ``size`` (bilinear, antialiased)."""
    h, w = x.shape[-2:]
    if min(h, w) == size:
        return x
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    return F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)


def random_resized_crop_params(
    h: int,
    w: int,
    area: tuple[float, float] = (0.08, 1.0),
    aspect: tuple[float, float] = (3 / 4, 4 / 3),
    rng: random.Random | None = None,
) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of an Inception-style random crop (10 tries, then centre)."""
    rng = rng or random.Random()
    total = h * w
    log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
    for _ in range(10):
        target = total * rng.uniform(*area)
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        cw = round(math.sqrt(target * ratio))
        ch = round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            return rng.randint(0, h - ch), rng.randint(0, w - cw), ch, cw
    # fallback: the largest centre crop within the aspect range
    in_ratio = w / h
    if in_ratio < aspect[0]:
        cw, ch = w, round(w / aspect[0])
    elif in_ratio > aspect[1]:
        ch, cw = h, round(h * aspect[1])
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def crop_resize(x: Tensor, top: int, left: int, ch: int, cw: int, size: int) -> Tensor:
    """x: (F, 3, H, W) -> crop -> (F, 3, size, size)."""
    x = x[..., top : top + ch, left : left + cw]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def three_crops(x: Tensor, size: int) -> list[Tensor]:
    """Left / centre / right (top / centre / bottom for portrait) square crops: (F, 3, S, S) each."""
    h, w = x.shape[-2:]
    if w >= h:
        offsets = [0, (w - size) // 2, w - size]
        return [x[..., (h - size) // 2 : (h - size) // 2 + size, o : o + size] for o in offsets]
    offsets = [0, (h - size) // 2, h - size]
    return [x[..., o : o + size, (w - size) // 2 : (w - size) // 2 + size] for o in offsets]


def centre_crop(x: Tensor, size: int) -> Tensor:
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def affine(x: Tensor, matrix: Sequence[float], fill: float = 0.5) -> Tensor:
    """Apply a 2x3 affine (normalised coordinates, output -> input) to (F, 3, H, W) in [0, 1]."""
    theta = (
        torch.tensor(matrix, dtype=x.dtype, device=x.device).view(1, 2, 3).expand(x.shape[0], 2, 3)
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Sample a ones channel too, to paint the outside with ``fill``.
    ones = torch.ones_like(x[:, :1])
    out = F.grid_sample(
        torch.cat([x, ones], 1), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    img, mask = out[:, :3], out[:, 3:]
    return img + (1.0 - mask) * fill


# ---------------------------------------------------------------------------------------------
# RandAugment-style colour / geometry ops on float clips in [0, 1]; same parameters for all frames


def _gray(x: Tensor) -> Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)


def _blend(a: Tensor, b: Tensor, factor: float) -> Tensor:
    return (b + factor * (a - b)).clamp(0.0, 1.0)


def adjust_brightness(x: Tensor, f: float) -> Tensor:
    return _blend(x, torch.zeros_like(x), f)


def adjust_contrast(x: Tensor, f: float) -> Tensor:
    mean = _gray(x).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(x, mean.expand_as(x), f)


def adjust_saturation(x: Tensor, f: float) -> Tensor:
    return _blend(x, _gray(x), f)


def adjust_sharpness(x: Tensor, f: float) -> Tensor:
    kernel = torch.tensor([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=x.dtype, device=x.device) / 13.0
    blurred = F.conv2d(
        F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel.expand(3, 1, 3, 3), groups=3
    )
    return _blend(x, blurred, f)


def posterize(x: Tensor, bits: int) -> Tensor:
    levels = 2**bits
    return torch.floor(x * 255.0 / (256 // levels)) * (256 // levels) / 255.0


def solarize(x: Tensor, threshold: float) -> Tensor:
    return torch.where(x >= threshold, 1.0 - x, x)


def autocontrast(x: Tensor) -> Tensor:
    lo = x.amin(dim=(0, -2, -1), keepdim=True)  # per channel over the whole clip
    hi = x.amax(dim=(0, -2, -1), keepdim=True)
    return ((x - lo) / (hi - lo).clamp_min(1e-3)).clamp(0.0, 1.0)


def rotate(x: Tensor, degrees: float) -> Tensor:
    a = math.radians(degrees)
    h, w = x.shape[-2:]
    r = h / w  # affine_grid works in normalised coordinates; keep pixels square
    return affine(x, [math.cos(a), -math.sin(a) * r, 0.0, math.sin(a) / r, math.cos(a), 0.0])


def shear_x(x: Tensor, s: float) -> Tensor:
    return affine(x, [1.0, s, 0.0, 0.0, 1.0, 0.0])


def shear_y(x: Tensor, s: float) -> Tensor:
    return affine(x, [1.0, 0.0, 0.0, s, 1.0, 0.0])


def translate_x(x: Tensor, frac: float) -> Tensor:
    return affine(x, [1.0, 0.0, 2.0 * frac, 0.0, 1.0, 0.0])


def translate_y(x: Tensor, frac: float) -> Tensor:
    return affine(x, [1.0, 0.0, 0.0, 0.0, 1.0, 2.0 * frac])


def _signed(rng: random.Random, v: float) -> float:
    return v if rng.random() < 0.5 else -v


# op name -> (clip, magnitude in [0, 1], rng) -> clip
RAND_AUGMENT_OPS: dict[str, Callable[[Tensor, float, random.Random], Tensor]] = {
    "identity": lambda x, m, r: x,
    "autocontrast": lambda x, m, r: autocontrast(x),
    "brightness": lambda x, m, r: adjust_brightness(x, 1.0 + _signed(r, 0.9 * m)),
    "contrast": lambda x, m, r: adjust_contrast(x, 1.0 + _signed(r, 0.9 * m)),
    "color": lambda x, m, r: adjust_saturation(x, 1.0 + _signed(r, 0.9 * m)),
    "sharpness": lambda x, m, r: adjust_sharpness(x, 1.0 + _signed(r, 0.9 * m)),
    "posterize": lambda x, m, r: posterize(x, max(1, 8 - round(4 * m))),
    "solarize": lambda x, m, r: solarize(x, 1.0 - m),
    "rotate": lambda x, m, r: rotate(x, _signed(r, 30.0 * m)),
    "shear_x": lambda x, m, r: shear_x(x, _signed(r, 0.3 * m)),
    "shear_y": lambda x, m, r: shear_y(x, _signed(r, 0.3 * m)),
    "translate_x": lambda x, m, r: translate_x(x, _signed(r, 0.45 * m)),
    "translate_y": lambda x, m, r: translate_y(x, _signed(r, 0.45 * m)),
}


def rand_augment(x: Tensor, num_ops: int, magnitude: int, rng: random.Random) -> Tensor:
    """Apply ``num_ops`` random ops at ``magnitude`` / 10 (with a little jitter) to a clip."""
    for _ in range(num_ops):
        name = rng.choice(list(RAND_AUGMENT_OPS))
        m = min(1.0, max(0.0, rng.gauss(magnitude, 0.5) / 10.0))
        x = RAND_AUGMENT_OPS[name](x, m, rng)
    return x


def to_float(frames: Tensor) -> Tensor:
    """uint8 (F, H, W, 3) -> float (F, 3, H, W) in [0, 1]."""
    return frames.permute(0, 3, 1, 2).float().div_(255.0)


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


class TrainTransform:
    """Random resized crop -> flip (+ label swap) -> RandAugment -> grayscale -> normalise.

    ``__call__(frames uint8 (F, H, W, 3), label) -> (float (F, 3, S, S), label)``.
    """

    def __init__(
        self,
        size: int,
        *,
        area: tuple[float, float] = (0.08, 1.0),
        aspect: tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
        flip_map: dict[int, int] | None = None,
        grayscale_prob: float = 0.0,
        rand_augment_ops: int = 2,
        rand_augment_magnitude: int = 9,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        rng: random.Random | None = None,
    ) -> None:
        self.size = size
        self.area = area
        self.aspect = aspect
        self.flip = flip
        self.flip_map = flip_map or {}
        self.grayscale_prob = grayscale_prob
        self.rand_augment_ops = rand_augment_ops
        self.rand_augment_magnitude = rand_augment_magnitude
        self.mean, self.std = mean, std
        self.rng = rng or random.Random()

    def __call__(self, frames: Tensor, label: int) -> tuple[Tensor, int]:
        rng = self.rng
        h, w = frames.shape[1:3]
        top, left, ch, cw = random_resized_crop_params(h, w, self.area, self.aspect, rng)
        x = crop_resize(
            to_float(frames[:, top : top + ch, left : left + cw]), 0, 0, ch, cw, self.size
        )
        if self.flip and rng.random() < 0.5:
            x = x.flip(-1)
            label = self.flip_map.get(label, label)
        if self.rand_augment_ops > 0:
            x = rand_augment(x, self.rand_augment_ops, self.rand_augment_magnitude, rng)
        if self.grayscale_prob > 0 and rng.random() < self.grayscale_prob:
            x = _gray(x).contiguous()
        return normalize(x, self.mean, self.std), label


class EvalTransform:
    """Resize the shorter side, take 1 (centre) or 3 spatial crops, normalise.

    ``__call__(frames uint8 (F, H, W, 3)) -> float (num_crops, F, 3, S, S)``.
    """

    def __init__(
        self,
        size: int,
        num_crops: int = 1,
        resize: int = 0,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
    ) -> None:
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
        self.size = size
        self.num_crops = num_crops
        self.resize = resize or (size * 256 // 224 if num_crops == 1 else size)
        self.mean, self.std = mean, std

    def __call__(self, frames: Tensor) -> Tensor:
        x = resize_short_side(to_float(frames), self.resize)
        crops = [centre_crop(x, self.size)] if self.num_crops == 1 else three_crops(x, self.size)
        return torch.stack([normalize(c, self.mean, self.std) for c in crops])
