"""TD-Adapter (Eq. 4) and SME-Adapter (Eq. 2-3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sidetune.recognition.adapters import (
    PatchStem3d,
    SMEAdapter,
    TDAdapter,
    TokenBatchNorm,
    td_adapter,
    temporal_depthwise,
    temporal_max_pool,
)


def _identity_bn(bn: nn.BatchNorm1d) -> None:
    bn.eval()
    assert bn.running_mean is not None and bn.running_var is not None
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)  # (x - 0) / sqrt(1 - eps + eps) = x


def test_token_batchnorm_equals_batchnorm3d() -> None:
    x = torch.randn(2, 4, 6, 8)  # (B, T, N, C)
    tbn, bn3 = TokenBatchNorm(8), nn.BatchNorm3d(8)
    y_tok = tbn(x)
    y_3d = bn3(x.permute(0, 3, 1, 2).unsqueeze(-1)).squeeze(-1).permute(0, 2, 3, 1)
    torch.testing.assert_close(y_tok, y_3d)
    torch.testing.assert_close(tbn.running_var, bn3.running_var)


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_temporal_max_pool_matches_max_pool1d(k: int) -> None:
    x = torch.randn(2, 8, 3, 5)
    ref = (
        F.max_pool1d(x.permute(0, 2, 3, 1).reshape(-1, 1, 8), k, 1, k // 2)
        .reshape(2, 3, 5, 8)
        .permute(0, 3, 1, 2)
    )
    torch.testing.assert_close(temporal_max_pool(x, k), ref)


def test_temporal_depthwise_matches_conv1d() -> None:
    x = torch.randn(2, 6, 4, 3)
    w, b = torch.randn(3, 3), torch.randn(3)
    ref = F.conv1d(x.permute(0, 2, 3, 1).reshape(8, 3, 6), w[:, None], b, padding=1, groups=3)
    torch.testing.assert_close(
        temporal_depthwise(x, w, b), ref.reshape(2, 4, 3, 6).permute(0, 3, 1, 2)
    )


def _hand_adapter(reference: str = "pool", kernel: int = 3) -> TDAdapter:
    """C = 2 -> hidden 1: squeeze = sum of channels, expand = (1, -1), BN identities."""
    a = TDAdapter(2, reduction=2, kernel=kernel, reference=reference)  # type: ignore[arg-type]
    with torch.no_grad():
        a.squeeze.weight.copy_(torch.tensor([[1.0, 1.0]]))
        a.expand.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        if a.ref_conv is not None:
            a.ref_conv.copy_(torch.tensor([[0.0, 0.0, 1.0]]))  # reference = next frame
    _identity_bn(a.squeeze_bn)
    _identity_bn(a.expand_bn)
    return a


def test_td_adapter_gate_on_hand_made_input() -> None:
    # one video, T = 4 frames, one token, C = 2
    x = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.0, 0.0], [1.0, 1.0]]).view(1, 4, 1, 2)
    z = torch.tensor([1.0, 3.0, 0.0, 2.0])  # squeeze: channel sum
    pooled = torch.tensor([3.0, 3.0, 3.0, 2.0])  # max over {t-1, t, t+1}
    d = z - pooled  # Eq. 4
    y = 0.5 * d + 0.5 * d  # hidden width 1: the channel mean is d itself
    y2 = torch.stack([y, -y], dim=-1)  # expand (1, -1)
    expected = x.view(4, 2) + x.view(4, 2) * (torch.sigmoid(y2) - 0.5)
    out = td_adapter(x, _hand_adapter("pool"))
    torch.testing.assert_close(out.view(4, 2), expected)


@pytest.mark.parametrize(
    ("reference", "expected_ref"),
    [
        ("pool", [3.0, 3.0, 3.0, 2.0]),
        ("conv", [3.0, 0.0, 2.0, 0.0]),  # next frame, zero-padded
        ("diff", [1.0, 1.0, 3.0, 0.0]),  # previous frame, first = itself
    ],
)
def test_td_adapter_reference_variants(reference: str, expected_ref: list[float]) -> None:
    a = _hand_adapter(reference)
    z = torch.tensor([1.0, 3.0, 0.0, 2.0]).view(1, 4, 1, 1)
    torch.testing.assert_close(a.temporal_reference(z).view(4), torch.tensor(expected_ref))


def test_td_adapter_kernel_sizes_change_the_reference() -> None:
    z = torch.tensor([0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0]).view(1, 7, 1, 1)
    r3 = _hand_adapter("pool", 3).temporal_reference(z).view(7)
    r7 = _hand_adapter("pool", 7).temporal_reference(z).view(7)
    assert r3.tolist() == [0, 0, 5, 5, 5, 0, 0]
    assert r7.tolist() == [5, 5, 5, 5, 5, 5, 5]


def test_td_adapter_static_video_is_identity() -> None:
    # No motion: Z - Pool(Z) = 0 -> y = BN(0) -> gate sigmoid(0) - 0.5 = 0 with identity BNs
    x = torch.randn(1, 1, 5, 6).expand(2, 8, 5, 6).contiguous()
    a = TDAdapter(6, reduction=2)
    _identity_bn(a.squeeze_bn)
    _identity_bn(a.expand_bn)
    torch.testing.assert_close(a(x), x)


def _frames(b: int = 2, t: int = 4, n: int = 5, size: int = 32) -> torch.Tensor:
    return torch.randn(b, t, n, 3, size, size)


@pytest.mark.parametrize("n", [1, 3, 5])
def test_sme_shapes(n: int) -> None:
    sme = SMEAdapter(dim=16, patch_size=8, num_local_frames=n)
    out = sme(_frames(n=n))
    assert out.shape == (2, 4, 16, 16)
    assert (sme.diff_stem is None) == (n == 1)
    if n > 1:
        assert sme.diff_stem is not None
        assert sme.diff_stem.conv.in_channels == 3 * (n - 1)


def test_sme_n1_is_the_plain_rgb_stem() -> None:
    sme = SMEAdapter(dim=16, patch_size=8, num_local_frames=1, rgb_weight=1.0)
    x = _frames(n=1)
    torch.testing.assert_close(sme(x), sme.rgb_stem(x[:, :, 0]))


def test_sme_fuses_differences_of_consecutive_local_frames() -> None:
    sme = SMEAdapter(dim=16, patch_size=8, num_local_frames=3, rgb_weight=1.0, diff_weight=0.5)
    seen: dict[str, torch.Tensor] = {}

    class Spy(nn.Module):
        def channels_first(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, T, H, W)
            seen["diff"] = x.transpose(1, 2)
            return torch.ones(x.shape[0], x.shape[2], 16, 16)

    sme.diff_stem = Spy()  # type: ignore[assignment]
    x = _frames(n=3)
    out = sme(x)
    expected_d = torch.cat([x[:, :, 1] - x[:, :, 0], x[:, :, 2] - x[:, :, 1]], dim=2)  # Eq. 2
    torch.testing.assert_close(seen["diff"], expected_d)
    torch.testing.assert_close(out, sme.rgb_stem(x[:, :, 1]) + 0.5)  # Eq. 3: beta rgb + alpha diff


def test_sme_rejects_wrong_window() -> None:
    with pytest.raises(ValueError, match="local frames"):
        SMEAdapter(dim=16, patch_size=8, num_local_frames=5)(_frames(n=3))


def test_stem_pads_one_pixel_like_the_official_stem() -> None:
    # One channel, patch 4, an 8x8 frame x[i, j] = 8 i + j; the stem sums its window (only the
    # centre temporal tap is non-zero), BN is the identity. With the official padding (1, 1, 1)
    # token (r, c) sums x over rows / cols [4r - 1, 4r + 3), zeros outside the frame.
    stem = PatchStem3d(1, 1, patch_size=4, temporal_kernel=3)
    assert stem.conv.padding == (1, 1, 1)
    with torch.no_grad():
        stem.conv.weight.zero_()
        stem.conv.weight[0, 0, 1] = 1.0
        stem.conv.bias.zero_()
    stem.bn.eval()
    assert stem.bn.running_var is not None
    stem.bn.running_var.fill_(1.0 - stem.bn.eps)
    x = torch.arange(64, dtype=torch.float32).view(1, 1, 1, 8, 8)  # (B, T, C, H, W)
    out = stem(x).view(2, 2)
    # hand sums: (0,0) = rows 0-2 x cols 0-2 = 3 (0 + 8 + 16) + 3 (0 + 1 + 2) = 81 (unpadded: 216)
    # (1,1) = rows 3-6 x cols 3-6 = 4 * 8 (3 + 4 + 5 + 6) + 4 (3 + 4 + 5 + 6) = 648
    # (0,1) = rows 0-2 x cols 3-6 = 4 (0 + 8 + 16) + 3 (3 + 4 + 5 + 6) = 150
    # (1,0) = rows 3-6 x cols 0-2 = 3 * 8 (3 + 4 + 5 + 6) + 4 (0 + 1 + 2) = 444
    torch.testing.assert_close(out, torch.tensor([[81.0, 150.0], [444.0, 648.0]]))
    # the same as a shifted convolution: pad one pixel, then plain non-overlapping windows
    xp = F.pad(x.view(8, 8), (1, 1, 1, 1))
    ref = torch.stack(
        [xp[4 * r : 4 * r + 4, 4 * c : 4 * c + 4].sum() for r in (0, 1) for c in (0, 1)]
    )
    torch.testing.assert_close(out.flatten(), ref)


@pytest.mark.parametrize(("image", "patch"), [(224, 16), (224, 14), (32, 8)])
def test_padded_stem_keeps_clip_grid(image: int, patch: int) -> None:
    stem = PatchStem3d(3, 4, patch_size=patch)
    assert stem(torch.zeros(1, 2, 3, image, image)).shape == (1, 2, (image // patch) ** 2, 4)
