"""The two TDS-CLIP adapters: ``td_adapter`` (Eq. 4) and ``sme_adapter`` (Eq. 2-3).

The side stream is kept as tokens ``(B, T, N, C)`` (N = h * w patches, channels last) rather
than ``(B, C, T, h, w)``: a 1x1x1 conv is a ``Linear`` on the last axis and a BatchNorm3d is a
BatchNorm over all ``B * T * N`` positions, so no transposes (and no transposed copies kept for
backward) are needed between the convolutional and the attention parts of a side block.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sidetune.nn.linear import Linear, linear
from sidetune.recognition.lean_saving import rebuild

TDReference = Literal["pool", "conv", "diff"]


class TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm3d of a ``(B, C, T, h, w)`` map, applied to its tokens ``(..., C)``.

    Statistics are per channel over every other axis, exactly as ``nn.BatchNorm3d``.
    """

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        y = super().forward(x.reshape(-1, shape[-1])).reshape(shape)
        return rebuild(y, self.recompute, x)  # BN keeps x for its backward anyway

    def recompute(self, x: Tensor) -> Tensor:
        """The forward's output again, elementwise (no running-stat update): batch statistics in
        training, running ones in eval. Equal to the forward's output to float rounding."""
        flat = x.reshape(-1, x.shape[-1])
        if self.training or self.running_mean is None or self.running_var is None:
            var, mean = torch.var_mean(flat, dim=0, correction=0)
        else:
            var, mean = self.running_var, self.running_mean
        alpha = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            alpha = alpha * self.weight
        beta = -mean * alpha if self.bias is None else self.bias - mean * alpha
        return torch.addcmul(beta, flat, alpha).reshape(x.shape)

    def normalize_with_stats(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Differentiable batch-statistics BN of ``x`` (..., C) and the stats ``(mean, var)``
        (biased), without touching the running statistics."""
        flat = x.reshape(-1, x.shape[-1])
        var, mean = torch.var_mean(flat, dim=0, correction=0)
        y = (flat - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.weight + self.bias
        return y.reshape(x.shape), mean, var


def temporal_depthwise(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Depthwise conv with kernel ``(k, 1, 1)`` and zero 'same' padding along T.

    x: (B, T, N, C); weight: (C, k); bias: (C,) or None. Returns (B, T, N, C).
    """
    k = weight.shape[1]
    xp = F.pad(x, (0, 0, 0, 0, k // 2, k // 2))
    return depthwise_padded(xp, weight, bias)


def depthwise_padded(xp: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """:func:`temporal_depthwise` of an input already padded along T: (B, T + k - 1, N, C)."""
    k = weight.shape[1]
    t = xp.shape[1] - k + 1
    out = xp[:, 0:t] * weight[:, 0]
    for j in range(1, k):  # loop over the (tiny) kernel taps, not over data
        out = out + xp[:, j : j + t] * weight[:, j]
    return out if bias is None else out + bias


def temporal_max_pool(x: Tensor, kernel: int) -> Tensor:
    """Max-pool along T with stride 1 and 'same' padding (pads never win). x: (B, T, N, C)."""
    if kernel == 1:
        return x
    pad = kernel // 2
    xp = F.pad(x, (0, 0, 0, 0, pad, pad), value=float("-inf"))
    return xp.unfold(1, kernel, 1).amax(dim=-1)


class TDAdapter(nn.Module):
    """Temporal Difference Adapter (paper Eq. 4, Fig. 3b).

    ``Z_s = BN(W_squeeze x)`` (C -> C / r), ``D_s = Z_s - ref(Z_s)`` with ``ref`` a temporal
    max-pool (kernel k, stride 1, same padding; the paper's choice), a learnable depthwise
    temporal conv, or the previous frame (direct difference) -- Table 3d. ``D_s`` is mixed with
    its channel mean (0.5 / 0.5), expanded back to C with a 1x1 conv + BN, and gates the input:
    ``out = x + x * (sigmoid(y) - 0.5)``.

    x: (B, T, N, C) -> (B, T, N, C).
    """

    def __init__(
        self, channels: int, reduction: int = 16, kernel: int = 3, reference: TDReference = "pool"
    ) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.kernel = kernel
        self.reference = reference
        self.squeeze = Linear(channels, hidden, bias=False)
        self.squeeze_bn = TokenBatchNorm(hidden)
        self.ref_conv = (
            nn.Parameter(torch.full((hidden, kernel), 1.0 / kernel))
            if reference == "conv"
            else None
        )
        self.expand = Linear(hidden, channels, bias=False)
        self.expand_bn = TokenBatchNorm(channels)

    def temporal_reference(self, z: Tensor) -> Tensor:
        if self.reference == "pool":
            return temporal_max_pool(z, self.kernel)
        if self.reference == "conv":
            assert self.ref_conv is not None
            return temporal_depthwise(z, self.ref_conv)
        # direct difference against the previous frame; the first frame is its own reference
        return torch.cat([z[:, :1], z[:, :-1]], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return td_adapter(x, self)


def td_adapter(x: Tensor, adapter: TDAdapter) -> Tensor:
    """Eq. 4 and the gate around it; see :class:`TDAdapter`."""
    z = adapter.squeeze_bn(adapter.squeeze(x))
    d = z - adapter.temporal_reference(z)  # Eq. 4: D_s = Z_s - Pool(Z_s)
    m = 0.5 * d + 0.5 * d.mean(dim=-1, keepdim=True)  # (..., C / r): small
    e = rebuild(adapter.expand(m), linear, m, adapter.expand.weight)
    gate = torch.sigmoid(adapter.expand_bn(e))
    # full-width tensors kept for backward are rebuilt from the small m (see lean_saving)
    gate = rebuild(gate, _td_gate, m, adapter)
    return x + x * rebuild(gate - 0.5, lambda m: _td_gate(m, adapter) - 0.5, m)


def _td_gate(m: Tensor, adapter: TDAdapter) -> Tensor:
    return torch.sigmoid(adapter.expand_bn.recompute(linear(m, adapter.expand.weight)))


class PatchStem3d(nn.Module):
    """Conv3d patchify stem + BatchNorm3d: (B, T, Cin, H, W) -> tokens (B, T, h*w, D).

    Kernel ``(kt, P, P)``, stride ``(1, P, P)``, padding ``(kt // 2, 1, 1)``: the official stem
    (``conv_3xnxn_std`` of the authors' code) zero-pads one pixel on every spatial side, so
    side token (r, c) sees pixels ``[rP - 1, rP + P - 1)`` -- CLIP's grid shifted up-left by a
    pixel. The grid size is unchanged for P > 2: ``(H + 2 - P) // P + 1 = H / P``. Trained stem
    weights only fit this grid.
    """

    def __init__(
        self, in_channels: int, dim: int, patch_size: int, temporal_kernel: int = 3
    ) -> None:
        super().__init__()
        self.conv = nn.Conv3d(
            in_channels,
            dim,
            kernel_size=(temporal_kernel, patch_size, patch_size),
            stride=(1, patch_size, patch_size),
            padding=(temporal_kernel // 2, 1, 1),
        )
        self.bn = nn.BatchNorm3d(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.channels_first(x.transpose(1, 2))

    def channels_first(self, x: Tensor) -> Tensor:
        """x: (B, Cin, T, H, W) -> tokens (B, T, h*w, D)."""
        y = self.bn(self.conv(x))  # (B, D, T, h, w)
        return y.flatten(3).permute(0, 2, 3, 1)


class SMEAdapter(nn.Module):
    """Side Motion Enhancement Adapter (Eq. 2-3, Fig. 4): the side network's input stem.

    frames: (B, T, n, 3, H, W) normalised; frame ``n // 2`` of each local window is the sampled
    frame (the one CLIP sees). Returns the initial side stream ``S`` (B, T, N, D)::

        D_i = concat(V_{i-k+1} - V_{i-k}, ..., V_{i+k} - V_{i+k-1})   # Eq. 2, 3(n-1) channels
        S   = alpha * Conv1(D_i) + beta * Conv2(V_i)                   # Eq. 3

    With ``n == 1`` there is no difference branch: ``S = beta * Conv2(V_i)`` (the Side4Video
    stem), i.e. the SME-Adapter is disabled.
    """

    def __init__(
        self,
        dim: int,
        patch_size: int,
        num_local_frames: int = 5,
        rgb_weight: float = 1.0,
        diff_weight: float = 0.5,
        temporal_kernel: int = 3,
    ) -> None:
        super().__init__()
        self.num_local_frames = num_local_frames
        self.rgb_weight = rgb_weight
        self.diff_weight = diff_weight
        self.rgb_stem = PatchStem3d(3, dim, patch_size, temporal_kernel)
        self.diff_stem = (
            PatchStem3d(3 * (num_local_frames - 1), dim, patch_size, temporal_kernel)
            if num_local_frames > 1
            else None
        )

    def forward(self, frames: Tensor) -> Tensor:
        return sme_adapter(frames, self)


def sme_adapter(frames: Tensor, adapter: SMEAdapter) -> Tensor:
    """Eq. 2-3; see :class:`SMEAdapter`. frames: (B, T, n, 3, H, W) -> (B, T, N, D)."""
    n = frames.shape[2]
    if n != adapter.num_local_frames:
        raise ValueError(f"expected {adapter.num_local_frames} local frames per segment, got {n}")
    # the stems' inputs, channels first; the convs keep them for their weight gradients, so
    # they are registered to be rebuilt from ``frames`` (kept by the caller anyway)
    centre = rebuild(_centre(frames), _centre, frames)
    out = adapter.rgb_weight * adapter.rgb_stem.channels_first(centre)
    if adapter.diff_stem is not None:
        diffs = rebuild(_differences(frames), _differences, frames)
        out = out + adapter.diff_weight * adapter.diff_stem.channels_first(diffs)  # Eq. 3
    return out


def _centre(frames: Tensor) -> Tensor:
    """(B, T, n, 3, H, W) -> the sampled frames, (B, 3, T, H, W)."""
    return frames[:, :, frames.shape[2] // 2].transpose(1, 2).contiguous()


def _differences(frames: Tensor) -> Tensor:
    """Eq. 2: consecutive local differences in temporal order, (B, 3 (n - 1), T, H, W)."""
    diffs = frames[:, :, 1:] - frames[:, :, :-1]
    return diffs.flatten(2, 3).transpose(1, 2).contiguous()
