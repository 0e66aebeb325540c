"""Clip augmentations: shapes, one parameter set per clip, flip label swap, test views."""

from __future__ import annotations

import random

import pytest
import torch

from sidetune.recognition.transforms import (
    RAND_AUGMENT_OPS,
    SSV2_FLIP_PAIRS,
    EvalTransform,
    TrainTransform,
    flip_label_map,
    random_resized_crop_params,
)

SSV2_LIKE = [
    "Pushing something from left to right",
    "Pushing something from right to left",
    "Pulling [something] from left to right",
    "Pulling [something] from right to left",
    "Turning the camera left while filming something",
    "Turning the camera right while filming something",
    "Moving something up",
    "Putting something on a surface",
]


def test_flip_map_from_names_and_pairs() -> None:
    m = flip_label_map(SSV2_LIKE)
    assert m == {0: 1, 1: 0, 2: 3, 3: 2, 4: 5, 5: 4}
    assert flip_label_map(None, [[6, 7]]) == {6: 7, 7: 6}
    with pytest.raises(ValueError, match="two class ids"):
        flip_label_map(None, [[1, 2, 3]])


def test_flip_map_on_ssv2_label_names_gives_the_official_pairs() -> None:
    names = [f"class {i}" for i in range(174)]
    names[86], names[87] = "Pulling from left to right", "Pulling from right to left"
    names[93], names[94] = "Pushing from left to right", "Pushing from right to left"
    names[166], names[167] = (
        "Turning the camera left while filming ",
        "Turning the camera right while filming ",
    )
    names[43], names[45] = "Moving down", "Moving up"  # vertical: a horizontal flip keeps them
    assert flip_label_map(names) == flip_label_map(None, SSV2_FLIP_PAIRS)


class _AlwaysFlip(random.Random):
    def random(self) -> float:
        return 0.0


def _clip(f: int = 6, h: int = 24, w: int = 30) -> torch.Tensor:
    return torch.randint(0, 256, (f, h, w, 3), dtype=torch.uint8)


def test_train_transform_shapes_and_flip_swaps_label() -> None:
    tf = TrainTransform(
        16,
        flip_map=flip_label_map(SSV2_LIKE),
        rand_augment_ops=0,
        area=(1.0, 1.0),
        aspect=(1.25, 1.25),
        rng=_AlwaysFlip(),
    )
    clip = _clip(h=24, w=30)
    x, label = tf(clip, 0)
    assert x.shape == (6, 3, 16, 16) and x.dtype == torch.float32
    assert label == 1
    assert tf(clip, 6)[1] == 6  # no mirrored partner: unchanged
    no_flip = TrainTransform(
        16, flip=False, rand_augment_ops=0, area=(1.0, 1.0), aspect=(1.25, 1.25)
    )
    y, label2 = no_flip(clip, 0)
    assert label2 == 0
    torch.testing.assert_close(x, y.flip(-1))  # the whole clip is mirrored


def test_same_augmentation_for_every_frame() -> None:
    frame = _clip(f=1)
    clip = frame.expand(5, -1, -1, -1).contiguous()
    tf = TrainTransform(16, rand_augment_ops=3, grayscale_prob=0.5, rng=random.Random(3))
    for _ in range(5):
        x, _ = tf(clip, 0)
        assert torch.allclose(x, x[:1].expand_as(x))


@pytest.mark.parametrize("name", sorted(RAND_AUGMENT_OPS))
def test_rand_augment_ops_keep_shape_and_range(name: str) -> None:
    x = torch.rand(4, 3, 16, 16)
    y = RAND_AUGMENT_OPS[name](x, 0.9, random.Random(0))
    assert y.shape == x.shape
    assert float(y.min()) >= -1e-5 and float(y.max()) <= 1 + 1e-5


def test_random_resized_crop_params_in_bounds() -> None:
    rng = random.Random(0)
    for _ in range(100):
        top, left, ch, cw = random_resized_crop_params(40, 60, rng=rng)
        assert top >= 0 and top + ch <= 40 and left >= 0 and left + cw <= 60 and ch > 0 and cw > 0


@pytest.mark.parametrize("crops", [1, 3])
def test_eval_transform_views(crops: int) -> None:
    x = EvalTransform(16, num_crops=crops)(_clip(h=24, w=40))
    assert x.shape == (crops, 6, 3, 16, 16)
    if crops == 3:
        assert not torch.allclose(x[0], x[2])
