"""Side blocks: CLS token shift, block shapes, activation checkpointing."""

from __future__ import annotations

import torch

from sidetune.recognition.side_network import (
    SideProjection,
    build_tds_block,
    cls_token_shift,
    run_block,
)


def test_cls_token_shift_exact() -> None:
    # B = 1, T = 3, D = 4: value = 10 * frame + channel
    cls = torch.tensor([[[0.0, 1, 2, 3], [10, 11, 12, 13], [20, 21, 22, 23]]])
    expected = torch.tensor(
        [
            [
                [10.0, 11, 0, 0],  # t=0: first half from t+1, second half from t-1 (none)
                [20, 21, 2, 3],  # t=1
                [0, 0, 12, 13],  # t=2: no t+1
            ]
        ]
    )
    assert torch.equal(cls_token_shift(cls), expected)


def test_tds_block_shapes_and_td_switch() -> None:
    x, cls, pos = torch.randn(2, 4, 9, 64), torch.randn(2, 4, 64), torch.randn(9, 64)
    block = build_tds_block(64, 2, td_reduction=8)
    assert block(x, cls, pos).shape == x.shape
    assert block.temporal.td is not None
    assert build_tds_block(64, 2, td_adapter=False).temporal.td is None


def test_side_attention_uses_the_shifted_cls() -> None:
    block = build_tds_block(32, 2, td_reduction=8).eval()
    x, pos = torch.randn(1, 3, 4, 32), torch.zeros(4, 32)
    cls = torch.randn(1, 3, 32)
    base = block.attention(x, cls, pos)
    # Changing the CLS of frame 0 only affects frames whose shifted CLS reads it: t=1 (second half)
    cls2 = cls.clone()
    cls2[0, 0, 16:] += 5.0
    out = block.attention(x, cls2, pos)
    assert torch.allclose(out[:, 0], base[:, 0]) and torch.allclose(out[:, 2], base[:, 2])
    assert not torch.allclose(out[:, 1], base[:, 1])


def test_checkpointed_block_matches_and_updates_bn_once() -> None:
    torch.manual_seed(0)
    b1 = build_tds_block(32, 2, td_reduction=8)
    b2 = build_tds_block(32, 2, td_reduction=8)
    b2.load_state_dict(b1.state_dict())
    x = torch.randn(2, 4, 9, 32, requires_grad=True)
    cls, pos = torch.randn(2, 4, 32), torch.randn(9, 32)
    y1 = run_block(b1, x, cls, pos, checkpoint=False)
    y2 = run_block(b2, x, cls, pos, checkpoint=True)
    y1.square().sum().backward()
    y2.square().sum().backward()
    torch.testing.assert_close(y1, y2)
    for (n, p1), p2 in zip(b1.named_parameters(), b2.parameters()):
        assert p1.grad is not None and p2.grad is not None, n
        torch.testing.assert_close(p1.grad, p2.grad)
    for (n, r1), r2 in zip(b1.named_buffers(), b2.buffers()):
        torch.testing.assert_close(r1, r2, msg=n)


def test_side_projection_keeps_grads_and_matches_plain() -> None:
    proj = SideProjection(16, 8)
    tap = torch.randn(3, 5, 16)
    out = proj(tap)
    torch.testing.assert_close(out, proj.linear(proj.norm(tap)))
    out.sum().backward()
    assert proj.linear.weight.grad is not None and proj.norm.weight.grad is not None
