"""RandAugment as the authors train TDS-CLIP: timm's ``rand-m7-n4-mstd0.5-inc1``, in torch.

The authors' ``datasets/rand_augment.py`` is timm's ``auto_augment.py`` (PIL ops) applied to a
list of frames with one draw per clip. Per clip: ``n`` ops are drawn uniformly *with
replacement* from the 15 ``inc`` ops; each is applied with probability 0.5, at a magnitude
drawn from ``N(m, mstd)`` clipped to [0, 10]; signed ops flip their sign with probability 0.5.
Every frame of the clip gets the same op, magnitude and sign. Levels (``level = magnitude/10``):

================  =========================================================================
op                argument
================  =========================================================================
AutoContrast      none: per frame and channel, stretch [min, max] to [0, 255]
Equalize          none: per frame and channel, PIL's histogram equalisation
Invert            none: ``255 - x``
Rotate            ``+-30 level`` degrees about the centre
PosterizeInc.     keep ``4 - int(4 level)`` bits
SolarizeInc.      invert pixels ``>= 256 - int(256 level)``
SolarizeAdd       add ``int(110 level)`` to pixels ``< 128`` (clipped to 255)
Color/Contrast/   PIL ``ImageEnhance`` factor ``1 +- 0.9 level`` (blend with grey /
Brightness/Sharp. the grey mean / black / the SMOOTH-filtered frame)
ShearX/ShearY     ``+-0.3 level`` (about the top-left corner, as PIL's affine)
TranslateX/YRel   ``+-0.45 level`` of the width / height
================  =========================================================================

Geometric ops resample bicubically and fill with grey 128. Clips are uint8 ``(F, 3, H, W)``;
every op returns uint8, as PIL does, so values follow PIL's integer arithmetic.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

MAX_LEVEL = 10.0
FILL = 128

INCREASING_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
    "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
    "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# colour ops (uint8 in, uint8 out)


def _to_u8(x: Tensor) -> Tensor:
    """Truncate toward zero and clip, as PIL's ``(UINT8)`` casts after a float blend."""
    return x.clamp(0, 255).trunc().to(torch.uint8)


def grey(x: Tensor) -> Tensor:
    """PIL's ``convert("L")``: ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``. (F, 3, H, W) -> (F, 1, H, W)."""
    r, g, b = (x[:, c : c + 1].to(torch.int64) for c in range(3))
    return ((19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16).to(torch.uint8)


def blend(degenerate: Tensor, img: Tensor, factor: float) -> Tensor:
    """PIL ``Image.blend(degenerate, img, factor)``: ``deg + factor (img - deg)``, truncated."""
    d = degenerate.to(torch.float32)
    return _to_u8(d + factor * (img.to(torch.float32) - d))


def brightness(x: Tensor, factor: float) -> Tensor:
    return blend(torch.zeros_like(x), x, factor)


def color(x: Tensor, factor: float) -> Tensor:
    return blend(grey(x).expand_as(x), x, factor)


def contrast(x: Tensor, factor: float) -> Tensor:
    # PIL: a flat image at int(mean of the grey frame + 0.5), per frame
    mean = grey(x).to(torch.float64).mean(dim=(1, 2, 3), keepdim=True)
    return blend((mean + 0.5).floor().to(torch.uint8).expand_as(x), x, factor)


def smooth(x: Tensor) -> Tensor:
    """PIL ``ImageFilter.SMOOTH`` (3x3 kernel [1 1 1; 1 5 1; 1 1 1] / 13, rounded); the border
    pixels keep their values, as PIL's 3x3 filter leaves them."""
    k = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    f = x.to(torch.float32)
    out = F.conv2d(f.flatten(0, 1)[:, None], k[None, None]).view(
        *x.shape[:2], *[s - 2 for s in x.shape[2:]]
    )
    res = x.clone()
    res[..., 1:-1, 1:-1] = (out + 0.5).floor().clamp(0, 255).to(torch.uint8)
    return res


def sharpness(x: Tensor, factor: float) -> Tensor:
    return blend(smooth(x), x, factor)


def invert(x: Tensor) -> Tensor:
    return 255 - x


def posterize(x: Tensor, bits: int) -> Tensor:
    if bits >= 8:
        return x
    return x & (~(2 ** (8 - bits) - 1) & 0xFF)


def solarize(x: Tensor, threshold: int) -> Tensor:
    return torch.where(x >= threshold, 255 - x, x)


def solarize_add(x: Tensor, add: int, threshold: int = 128) -> Tensor:
    return torch.where(x < threshold, (x.to(torch.int32) + add).clamp(max=255).to(torch.uint8), x)


def autocontrast(x: Tensor) -> Tensor:
    """PIL ``ImageOps.autocontrast`` (cutoff 0) per frame and channel."""
    lo = x.amin(dim=(2, 3), keepdim=True).to(torch.float64)
    hi = x.amax(dim=(2, 3), keepdim=True).to(torch.float64)
    scale = 255.0 / (hi - lo).clamp_min(1.0)
    out = _to_u8((x.to(torch.float64) - lo) * scale)
    return torch.where(hi > lo, out, x)


def equalize(x: Tensor) -> Tensor:
    """PIL ``ImageOps.equalize`` per frame and channel: ``lut[i] = (step // 2 + sum_{j<i} h[j]) // step``
    with ``step = (N - h[last non-empty bin]) // 255``; identity when ``step`` is 0."""
    f, c = x.shape[:2]
    flat = x.reshape(f * c, -1).to(torch.int64)
    hist = torch.zeros(f * c, 256, dtype=torch.int64).scatter_add_(1, flat, torch.ones_like(flat))
    last = 255 - hist.flip(1).ne(0).to(torch.int64).argmax(1)  # last non-empty bin
    step = (flat.shape[1] - hist.gather(1, last[:, None])[:, 0]) // 255
    before = hist.cumsum(1) - hist  # sum_{j < i} h[j]
    safe = step.clamp_min(1)[:, None]
    lut = ((safe // 2 + before) // safe).clamp(max=255)
    out = lut.gather(1, flat)
    out = torch.where(step[:, None] > 0, out, flat)
    return out.to(torch.uint8).view_as(x)


# ---------------------------------------------------------------------------------------------
# geometric ops


def affine(x: Tensor, matrix: tuple[float, float, float, float, float, float]) -> Tensor:
    """PIL ``Image.transform(size, AFFINE, (a, b, c, d, e, f), BICUBIC, fillcolor=128)``.

    Output point (X, Y) (pixel centres at i + 0.5) samples the input at
    ``(a X + b Y + c, d X + e Y + f)``; points outside the frame take the fill colour.
    """
    a, b, c, d, e, f = matrix
    n, _, h, w = x.shape
    ys = torch.arange(h, dtype=torch.float32) + 0.5
    xs = torch.arange(w, dtype=torch.float32) + 0.5
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    xin, yin = a * xx + b * yy + c, d * xx + e * yy + f
    inside = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
    grid = torch.stack([2 * xin / w - 1, 2 * yin / h - 1], dim=-1).expand(n, h, w, 2)
    out = F.grid_sample(x.to(torch.float32), grid, mode="bicubic", padding_mode="border",
                        align_corners=False)  # fmt: skip
    out = torch.where(inside, out, torch.full_like(out, float(FILL)))
    return out.round().clamp(0, 255).to(torch.uint8)


def rotate(x: Tensor, degrees: float) -> Tensor:
    """PIL ``rotate(degrees)``: counter-clockwise about the frame centre, same size."""
    h, w = x.shape[-2:]
    t = -math.radians(degrees)
    a, b, d, e = math.cos(t), math.sin(t), -math.sin(t), math.cos(t)
    cx, cy = w / 2.0, h / 2.0
    c = a * -cx + b * -cy + cx
    f = d * -cx + e * -cy + cy
    return affine(x, (a, b, c, d, e, f))


def shear_x(x: Tensor, factor: float) -> Tensor:
    return affine(x, (1.0, factor, 0.0, 0.0, 1.0, 0.0))


def shear_y(x: Tensor, factor: float) -> Tensor:
    return affine(x, (1.0, 0.0, 0.0, factor, 1.0, 0.0))


def translate_x_rel(x: Tensor, pct: float) -> Tensor:
    return affine(x, (1.0, 0.0, pct * x.shape[-1], 0.0, 1.0, 0.0))


def translate_y_rel(x: Tensor, pct: float) -> Tensor:
    return affine(x, (1.0, 0.0, 0.0, 0.0, 1.0, pct * x.shape[-2]))


# ---------------------------------------------------------------------------------------------
# levels -> arguments (timm's _*_level_to_arg) and the policy


def _negate(v: float, rng: random.Random) -> float:
    return -v if rng.random() > 0.5 else v  # timm's _randomly_negate


OP_ARGS: dict[str, Callable[[float, random.Random], tuple[float, ...]]] = {
    "Rotate": lambda m, r: (_negate(m / MAX_LEVEL * 30.0, r),),
    "PosterizeIncreasing": lambda m, r: (4 - int(m / MAX_LEVEL * 4),),
    "SolarizeIncreasing": lambda m, r: (256 - int(m / MAX_LEVEL * 256),),
    "SolarizeAdd": lambda m, r: (int(m / MAX_LEVEL * 110),),
    "ColorIncreasing": lambda m, r: (1.0 + _negate(m / MAX_LEVEL * 0.9, r),),
    "ContrastIncreasing": lambda m, r: (1.0 + _negate(m / MAX_LEVEL * 0.9, r),),
    "BrightnessIncreasing": lambda m, r: (1.0 + _negate(m / MAX_LEVEL * 0.9, r),),
    "SharpnessIncreasing": lambda m, r: (1.0 + _negate(m / MAX_LEVEL * 0.9, r),),
    "ShearX": lambda m, r: (_negate(m / MAX_LEVEL * 0.3, r),),
    "ShearY": lambda m, r: (_negate(m / MAX_LEVEL * 0.3, r),),
    "TranslateXRel": lambda m, r: (_negate(m / MAX_LEVEL * 0.45, r),),
    "TranslateYRel": lambda m, r: (_negate(m / MAX_LEVEL * 0.45, r),),
}

OPS: dict[str, Callable[..., Tensor]] = {
    "AutoContrast": autocontrast,
    "Equalize": equalize,
    "Invert": invert,
    "Rotate": rotate,
    "PosterizeIncreasing": lambda x, bits: posterize(x, int(bits)),
    "SolarizeIncreasing": lambda x, t: solarize(x, int(t)),
    "SolarizeAdd": lambda x, add: solarize_add(x, int(add)),
    "ColorIncreasing": color,
    "ContrastIncreasing": contrast,
    "BrightnessIncreasing": brightness,
    "SharpnessIncreasing": sharpness,
    "ShearX": shear_x,
    "ShearY": shear_y,
    "TranslateXRel": translate_x_rel,
    "TranslateYRel": translate_y_rel,
}


@dataclass(frozen=True)
class RandAugmentPolicy:
    """``rand-m{magnitude}-n{num_ops}-mstd{magnitude_std}-inc1`` (timm's config string)."""

    magnitude: float = 7.0
    num_ops: int = 4
    magnitude_std: float = 0.5
    prob: float = 0.5

    @classmethod
    def parse(cls, spec: str) -> RandAugmentPolicy:
        parts = spec.split("-")
        if parts[0] != "rand":
            raise ValueError(f"RandAugment policy {spec!r} must start with 'rand-'")
        values: dict[str, float] = {}
        for part in parts[1:]:
            key, num = [*re.split(r"(\d.*)", part), "", ""][:2]
            if key not in ("m", "n", "mstd", "inc") or not num:
                raise ValueError(f"RandAugment policy {spec!r}: unknown part {part!r}")
            values[key] = float(num)
        if values.get("inc", 0) != 1:
            raise ValueError(f"RandAugment policy {spec!r}: only the 'inc1' op set is implemented")
        return cls(values.get("m", 10.0), int(values.get("n", 2)), values.get("mstd", 0.0))

    def __call__(self, clip: Tensor, rng: random.Random) -> Tensor:
        """clip: uint8 (F, 3, H, W) -> uint8 (F, 3, H, W); one draw for every frame."""
        for _ in range(self.num_ops):
            name = INCREASING_OPS[rng.randrange(len(INCREASING_OPS))]  # with replacement
            if self.prob < 1.0 and rng.random() > self.prob:
                continue
            m = self.magnitude
            if self.magnitude_std > 0:
                m = rng.gauss(m, self.magnitude_std)
            m = min(MAX_LEVEL, max(0.0, m))
            args = OP_ARGS[name](m, rng) if name in OP_ARGS else ()
            clip = OPS[name](clip, *args)
        return clip
