"""Where to sample frames: fixed-length clips on a timeline, N frames uniform inside each clip.

Clip ``i`` covers ``[i * clip_length, (i + 1) * clip_length)`` seconds (the project-wide
convention shared with the feature files and the grounding annotations). A trailing partial clip
counts as a clip; its frames are spread over the part of it that the video actually covers.

Everything here is pure arithmetic on timestamps (no decoding), so it is easy to test and the
decoder (:mod:`sidetune.video.decode`) only has to follow the targets it is given.
"""

from __future__ import annotations

import math

import numpy as np

# Seconds of slack (about one frame) before a trailing sliver counts as a partial clip: container
# durations are often off by a frame (e.g. 150.0 s reported as 150.02 s).
_DURATION_TOLERANCE = 5e-2


def num_clips_for(duration: float, clip_length: float) -> int:
    """Number of ``clip_length``-second clips covering ``duration`` seconds (at least 1).

    ``ceil(duration / clip_length)`` but a trailing sliver shorter than 50 ms is dropped, so a
    150.02 s video at 2 s clips has 75 clips (as QVHighlights expects for its 150 s videos).
    """
    if clip_length <= 0:
        raise ValueError(f"clip_length must be > 0, got {clip_length}")
    if not math.isfinite(duration) or duration <= 0:
        return 1
    return max(1, math.ceil((duration - _DURATION_TOLERANCE) / clip_length))


def clip_sample_times(
    num_clips: int, clip_length: float, frames_per_clip: int, duration: float | None = None
) -> np.ndarray:
    """Target timestamps (seconds), shape ``(num_clips, frames_per_clip)``, sorted row-major.

    Frame ``j`` of clip ``i`` sits at the centre of the ``j``-th of ``frames_per_clip`` equal
    sub-intervals of the clip: ``start_i + (j + 0.5) * span_i / N``. When ``duration`` is
    given, the last clip's span is cut at ``duration`` so its frames stay inside the video.
    """
    if frames_per_clip < 1:
        raise ValueError(f"frames_per_clip must be >= 1, got {frames_per_clip}")
    starts = np.arange(num_clips, dtype=np.float64) * clip_length
    ends = starts + clip_length
    if duration is not None and duration > 0:
        ends = np.minimum(ends, max(float(duration), 0.0))
        ends = np.maximum(ends, starts)  # a clip past the end collapses to its start
    span = (ends - starts)[:, None]
    offsets = (np.arange(frames_per_clip, dtype=np.float64) + 0.5) / frames_per_clip
    return starts[:, None] + span * offsets[None, :]


def frames_shown_at(frame_times: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the frame on screen at each target time: the last frame with ``time <= target``.

    ``frame_times`` must be non-decreasing (presentation order). Targets before the first frame
    map to frame 0. Works for variable frame rate because it only looks at timestamps.
    Returns int64 indices with the shape of ``targets``.
    """
    if len(frame_times) == 0:
        raise ValueError("no frames")
    idx = np.searchsorted(np.asarray(frame_times), np.asarray(targets), side="right") - 1
    return np.clip(idx, 0, len(frame_times) - 1).astype(np.int64)


def clip_of_time(times: np.ndarray, clip_length: float) -> np.ndarray:
    """Clip index of each timestamp: ``floor(t / clip_length)`` (int64, same shape)."""
    return np.floor(np.asarray(times, dtype=np.float64) / clip_length).astype(np.int64)


def uniform_segment_indices(num_frames: int, num_segments: int) -> np.ndarray:
    """TSN-style test-time sampling: the centre frame of each of ``num_segments`` equal segments."""
    if num_frames < 1 or num_segments < 1:
        raise ValueError(
            f"need num_frames >= 1 and num_segments >= 1, got {num_frames}, {num_segments}"
        )
    seg = num_frames / num_segments
    return np.minimum((np.arange(num_segments) * seg + seg / 2).astype(np.int64), num_frames - 1)
