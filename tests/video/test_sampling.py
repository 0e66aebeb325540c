"""Clip arithmetic on timestamps."""

from __future__ import annotations

import numpy as np
import pytest

from sidetune.video.sampling import (
    clip_of_time,
    clip_sample_times,
    frames_shown_at,
    num_clips_for,
    uniform_segment_indices,
)


@pytest.mark.parametrize(
    ("duration", "clip_length", "expected"),
    [
        (150.0, 2.0, 75),
        (150.02, 2.0, 75),
        (151.0, 2.0, 76),
        (30.96, 1.0, 31),
        (0.3, 2.0, 1),
        (0.0, 1.0, 1),
    ],
)
def test_num_clips_for(duration: float, clip_length: float, expected: int) -> None:
    assert num_clips_for(duration, clip_length) == expected


def test_clip_sample_times_uniform_inside_each_clip() -> None:
    t = clip_sample_times(3, 2.0, 4)
    np.testing.assert_allclose(t[1], [2.25, 2.75, 3.25, 3.75])
    assert (clip_of_time(t, 2.0) == np.arange(3)[:, None]).all()
    # the last clip is cut at the duration, frames stay inside the video
    t = clip_sample_times(3, 2.0, 2, duration=5.0)
    np.testing.assert_allclose(t[2], [4.25, 4.75])
    assert np.all(np.diff(t.reshape(-1)) > 0)


def test_frames_shown_at_last_frame_not_after_target() -> None:
    frame_times = np.array([0.0, 0.5, 0.6, 2.0])
    idx = frames_shown_at(frame_times, np.array([-1.0, 0.0, 0.55, 0.6, 1.9, 5.0]))
    assert idx.tolist() == [0, 0, 1, 2, 2, 3]


def test_uniform_segment_indices() -> None:
    assert uniform_segment_indices(10, 5).tolist() == [1, 3, 5, 7, 9]
    assert uniform_segment_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]
