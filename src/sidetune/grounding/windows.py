"""Sliding windows: a video of any length through a model trained on a fixed horizon.

A video of ``T`` clips longer than the trained length ``W`` (``data.max_clips``) is cut into
overlapping windows of exactly ``W`` clips starting every ``stride`` clips (default ``W // 2``);
the last window is aligned to the end of the video so every window has the trained length and
every clip is covered. Each window is run through the model on its own; its moments are mapped
to absolute seconds (``+ start * clip_length``), the candidates of all windows are merged by the
same soft-NMS as one window's (:func:`sidetune.grounding.postprocess.soft_nms`, so a moment seen
by two overlapping windows is reported once), and each clip's saliency is the mean over the
windows that contain it.

Why not pool: averaging a 1-hour video into 75 bins makes each bin 48 s long and every moment
boundary is lost; windows keep the trained clip length, so boundaries keep the training
resolution at a cost linear in the video length.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sidetune.errors import SidetuneError


def resolve_stride(window: int, stride: int | None) -> int:
    """``stride`` clips (default half a window, at least 1); must not exceed the window."""
    if window < 1:
        raise SidetuneError(f"window must be >= 1 clip, got {window}")
    if stride is None:
        return max(1, window // 2)
    if not 1 <= stride <= window:
        raise SidetuneError(f"window stride must be in 1..{window} clips, got {stride}")
    return int(stride)


def window_starts(num_clips: int, window: int, stride: int) -> list[int]:
    """First clip of every window; ``[0]`` when the video fits one window.

    The last window is shifted to end at ``num_clips``, so all windows have ``window`` clips.
    """
    if num_clips <= window:
        return [0]
    starts = list(range(0, num_clips - window + 1, stride))
    if starts[-1] != num_clips - window:
        starts.append(num_clips - window)
    return starts


def average_saliency(per_window: Tensor, starts: list[int], num_clips: int) -> Tensor:
    """``(N_w, W)`` window saliency -> ``(num_clips,)``: mean over the windows covering each clip."""
    window = per_window.shape[1]
    index = (torch.as_tensor(starts, device=per_window.device)[:, None]
             + torch.arange(window, device=per_window.device)).reshape(-1)  # fmt: skip
    total = torch.zeros(num_clips, device=per_window.device, dtype=torch.float32)
    count = torch.zeros_like(total)
    total.index_add_(0, index, per_window.float().reshape(-1))
    count.index_add_(0, index, torch.ones_like(index, dtype=torch.float32))
    return total / count.clamp(min=1.0)


def to_absolute(
    spans_xx: Tensor, starts: list[int], clip_length: float, window: int, duration: float
) -> Tensor:
    """Window-relative ``(N_w, M, 2)`` windows in [0, 1] -> absolute seconds, clamped to the window.

    A window covers ``[start * c, (start + W) * c)`` seconds, cut at ``duration``.
    """
    offset = torch.as_tensor(starts, dtype=torch.float32, device=spans_xx.device) * clip_length
    lo = offset[:, None, None]
    hi = torch.clamp(lo + window * clip_length, max=duration)
    return torch.minimum(torch.maximum(spans_xx * window * clip_length + lo, lo), hi)


__all__ = ["average_saliency", "resolve_stride", "to_absolute", "window_starts"]
