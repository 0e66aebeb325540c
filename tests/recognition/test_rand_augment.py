"""timm's RandAugment ``rand-m7-n4-mstd0.5-inc1`` in torch: each op against PIL and hand values."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from sidetune.recognition import rand_augment as ra


def _img(seed: int = 0, h: int = 13, w: int = 17) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _ours(fn, img: np.ndarray, *args) -> np.ndarray:  # type: ignore[no-untyped-def]
    x = torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()
    return fn(x, *args)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("seed", [0, 1])
def test_colour_ops_equal_pil(seed: int) -> None:
    img = _img(seed)
    pil = Image.fromarray(img)
    cases = [
        (ra.autocontrast, (), ImageOps.autocontrast(pil)),
        (ra.equalize, (), ImageOps.equalize(pil)),
        (ra.invert, (), ImageOps.invert(pil)),
        (ra.posterize, (2,), ImageOps.posterize(pil, 2)),
        (ra.solarize, (77,), ImageOps.solarize(pil, 77)),
        (ra.color, (1.63,), ImageEnhance.Color(pil).enhance(1.63)),
        (ra.color, (0.37,), ImageEnhance.Color(pil).enhance(0.37)),
        (ra.contrast, (1.63,), ImageEnhance.Contrast(pil).enhance(1.63)),
        (ra.brightness, (0.37,), ImageEnhance.Brightness(pil).enhance(0.37)),
        (ra.brightness, (1.63,), ImageEnhance.Brightness(pil).enhance(1.63)),
        (ra.sharpness, (1.63,), ImageEnhance.Sharpness(pil).enhance(1.63)),
    ]
    for fn, args, ref in cases:
        diff = np.abs(_ours(fn, img, *args).astype(int) - np.asarray(ref).astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.02, (fn.__name__, args, diff.max())


def test_hand_values() -> None:
    x = (
        torch.tensor([0, 50, 127, 128, 200, 255], dtype=torch.uint8)
        .view(1, 1, 1, 6)
        .expand(1, 3, 1, 6)
    )
    assert ra.posterize(x, 2)[0, 0, 0].tolist() == [0, 0, 64, 128, 192, 192]  # keep the top 2 bits
    assert ra.solarize(x, 128)[0, 0, 0].tolist() == [0, 50, 127, 127, 55, 0]
    assert ra.solarize_add(x, 77)[0, 0, 0].tolist() == [77, 127, 204, 128, 200, 255]
    # [10, 35, 73, 74, 110, 137] -> (v - 10) * 255 / 127, truncated
    assert ra.autocontrast(x // 2 + 10)[0, 0, 0].tolist() == [0, 50, 126, 128, 200, 255]
    # levels at magnitude 7 (timm): posterize 4 - int(2.8) = 2 bits, solarize at 256 - 179 = 77,
    # solarize-add 77, enhance 1 +- 0.63, rotate +-21 degrees, shear +-0.21, translate +-0.315
    rng = random.Random(0)
    assert ra.OP_ARGS["PosterizeIncreasing"](7.0, rng) == (2,)
    assert ra.OP_ARGS["SolarizeIncreasing"](7.0, rng) == (77,)
    assert ra.OP_ARGS["SolarizeAdd"](7.0, rng) == (77,)
    factors = {round(ra.OP_ARGS["ColorIncreasing"](7.0, random.Random(s))[0], 6) for s in range(20)}
    assert factors == {1.63, 0.37}
    assert abs(ra.OP_ARGS["Rotate"](7.0, rng)[0]) == pytest.approx(21.0)
    assert abs(ra.OP_ARGS["TranslateXRel"](7.0, rng)[0]) == pytest.approx(0.315)


def test_translate_and_shear_follow_pil_geometry() -> None:
    img = _img(2, 16, 20)
    pil = Image.fromarray(img)
    # an integer shift is exact: content moves left by 0.25 * 20 = 5 px, grey 128 comes in
    ours = _ours(ra.translate_x_rel, img, 0.25)
    ref = np.asarray(pil.transform(pil.size, Image.Transform.AFFINE, (1, 0, 5, 0, 1, 0),
                                   resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128)))  # fmt: skip
    assert np.array_equal(ours, ref)
    assert np.array_equal(ours[:, :15], img[:, 5:]) and (ours[:, 15:] == 128).all()
    # shear about the top-left corner; the fill region matches PIL's exactly
    for fn, mat in ((ra.shear_x, (1, 0.3, 0, 0, 1, 0)), (ra.shear_y, (1, 0, 0, 0.3, 1, 0))):
        ours = _ours(fn, img, 0.3).astype(int)
        ref = np.asarray(pil.transform(pil.size, Image.Transform.AFFINE, mat,
                                       resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))).astype(int)  # fmt: skip
        assert np.abs(ours - ref).mean() < 6  # bicubic kernels differ (a = -0.75 vs PIL's -0.5)
    # rotation about the centre: 90 degrees of a square frame is exact up to the kernel
    sq = _img(3, 12, 12)
    rot = _ours(ra.rotate, sq, 90.0)
    assert np.array_equal(rot, np.rot90(sq, 1).copy())  # counter-clockwise, as PIL


def test_policy_parse_and_draws() -> None:
    p = ra.RandAugmentPolicy.parse("rand-m7-n4-mstd0.5-inc1")
    assert (p.magnitude, p.num_ops, p.magnitude_std, p.prob) == (7.0, 4, 0.5, 0.5)
    with pytest.raises(ValueError, match="inc1"):
        ra.RandAugmentPolicy.parse("rand-m9-n2")
    with pytest.raises(ValueError, match="unknown part"):
        ra.RandAugmentPolicy.parse("rand-m9-x3-inc1")
    clip = torch.from_numpy(_img(4, 16, 16)).permute(2, 0, 1)[None].repeat(3, 1, 1, 1)
    out = p(clip, random.Random(1))
    assert out.dtype == torch.uint8 and out.shape == clip.shape
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])  # one draw per clip
    # p = 0.5 per op, 4 ops: the clip is unchanged in about 1 / 16 of the draws
    same = sum(torch.equal(p(clip, random.Random(s)), clip) for s in range(160))
    assert 3 <= same <= 25
