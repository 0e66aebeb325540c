"""InternVideo2 details outside the network that must match the official code.

Position-embedding adaptation on load (``interpolate_pos_embed_internvideo2_new``: time linear,
then space bicubic, from the checkpoint's own frame count and grid) and the GELU switch.
The expected tables below are derived by hand: bicubic (a = -0.75, half-pixel centres, edge
clamping) resizes 2 -> 4 with the rows of ``UP`` and 2 -> 1 with weights (1/2, 1/2); linear
4 -> 8 frames samples frame ``clamp(i/2 - 1/4, 0, 3)``. We also ran the official function on
random tables of these shapes: our output was bit-identical.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from sidetune.backbones import create_backbone
from sidetune.backbones.internvideo2 import InternVideo2Backbone

# bicubic 2 -> 4: output x samples input at x/2 - 1/4 (clamped taps); weights per tap pair
UP = torch.tensor(
    [
        [1.10546875, -0.10546875],
        [0.7734375, 0.2265625],
        [0.2265625, 0.7734375],
        [-0.10546875, 1.10546875],
    ]
)
SPATIAL = torch.tensor([[0.0, 1.0], [2.0, 3.0]])  # value of patch (row, col) in every frame


def _checkpoint(tmp_path: Path) -> Path:
    """A 28-px (2x2 grid), 4-frame tiny checkpoint; pos_embed = 10 * frame + SPATIAL, CLS = -1."""
    src = create_backbone("internvideo2-tiny")
    assert isinstance(src, InternVideo2Backbone)
    sd = {f"vision_encoder.{k}": v.clone() for k, v in src.encoder.state_dict().items()}
    d = sd["vision_encoder.pos_embed"].shape[-1]
    frames = torch.arange(4.0).view(4, 1, 1) * 10 + SPATIAL  # (T, 2, 2)
    table = torch.cat([torch.tensor([-1.0]), frames.flatten()])
    sd["vision_encoder.pos_embed"] = table.view(1, -1, 1).expand(1, -1, d).clone()
    img = torch.cat([torch.tensor([-2.0]), SPATIAL.flatten()])
    sd["vision_encoder.img_pos_embed"] = img.view(1, -1, 1).expand(1, -1, d).clone()
    path = tmp_path / "f4_28px.pt"
    torch.save(sd, path)
    return path


def _table(model: InternVideo2Backbone, key: str) -> torch.Tensor:
    return getattr(model.encoder, key).detach()[0, :, 0]


def test_size_change_whose_token_count_divides_is_spatial(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    # 14 px: 4 frames x 1 token = 4 positions, which divides 16; the official code (and now
    # ours) resizes each frame's 2x2 grid to 1x1 (bicubic 2 -> 1 = the mean), time untouched.
    small = create_backbone("internvideo2-tiny", checkpoint=str(path), img_size=14)
    assert isinstance(small, InternVideo2Backbone)
    torch.testing.assert_close(
        _table(small, "pos_embed"), torch.tensor([-1.0, 1.5, 11.5, 21.5, 31.5])
    )
    torch.testing.assert_close(_table(small, "img_pos_embed"), torch.tensor([-2.0, 1.5]))
    # 56 px: 4 frames x 16 tokens = 64 positions; a 4x4 bicubic upsample per frame
    big = create_backbone("internvideo2-tiny", checkpoint=str(path), img_size=56)
    assert isinstance(big, InternVideo2Backbone)
    grid = UP @ SPATIAL @ UP.T  # (4, 4)
    expected = torch.cat(
        [torch.tensor([-1.0]), (torch.arange(4.0).view(4, 1, 1) * 10 + grid).flatten()]
    )
    torch.testing.assert_close(_table(big, "pos_embed"), expected)
    torch.testing.assert_close(
        _table(big, "img_pos_embed"), torch.cat([torch.tensor([-2.0]), grid.flatten()])
    )
    assert big.forward_intermediates(torch.randn(1, 4, 3, 56, 56)).shape == (4, 1, 32)


def test_frames_and_size_change_together(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    model = create_backbone(
        "internvideo2-tiny", checkpoint=str(path), img_size=56, frames_per_clip=8
    )
    assert isinstance(model, InternVideo2Backbone)
    times = 10 * torch.tensor([0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0])  # linear 4 -> 8
    grid = UP @ SPATIAL @ UP.T
    expected = torch.cat([torch.tensor([-1.0]), (times.view(8, 1, 1) + grid).flatten()])
    torch.testing.assert_close(_table(model, "pos_embed"), expected)
    assert model.load_report is not None
    assert any(
        a.startswith("pos_embed (1, 17, 64)->(1, 129, 64)") for a in model.load_report.adapted
    )


def test_gelu_switch_selects_the_tanh_approximation() -> None:
    erf = create_backbone("internvideo2-tiny")
    tanh = create_backbone("internvideo2-tiny", gelu="tanh")
    assert isinstance(erf, InternVideo2Backbone) and isinstance(tanh, InternVideo2Backbone)
    tanh.load_state_dict(erf.state_dict())
    x = torch.linspace(-3, 3, 13)
    want = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(tanh.encoder.blocks[0].mlp.act(x), want)
    torch.testing.assert_close(
        erf.encoder.blocks[0].mlp.act(x), 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    )
    clips = torch.randn(2, 4, 3, 28, 28)
    a, b = (
        erf.forward_intermediates(clips, [1, 4], "cls"),
        tanh.forward_intermediates(clips, [1, 4], "cls"),
    )
    assert not torch.equal(a, b)  # the switch reaches the blocks the features come from
    torch.testing.assert_close(a, b, atol=5e-2, rtol=0)  # ... by the approximation's size
    # Each block's MLP changes by the approximation's size on unit-scale inputs (the tiny
    # random layer scales keep the whole-model difference small).
    h = torch.randn(8, erf.encoder.blocks[0].mlp.fc1.in_features)
    for blk_erf, blk_tanh in zip(erf.encoder.blocks, tanh.encoder.blocks):
        ma, mb = blk_erf.mlp(h), blk_tanh.mlp(h)
        assert not torch.allclose(ma, mb, atol=1e-6, rtol=0)
