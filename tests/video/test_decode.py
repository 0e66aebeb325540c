"""Decoding real (generated) videos: counts, timestamps, clip assignment, errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

from sidetune.errors import SidetuneError
from sidetune.video.decode import VideoDecodeError, iter_clips, probe, read_frames
from sidetune.video.sampling import clip_sample_times

# One solid colour per second of video, far apart so lossy coding cannot confuse them.
COLOURS = [
    (230, 20, 20),
    (20, 230, 20),
    (20, 20, 230),
    (230, 230, 20),
    (20, 230, 230),
    (230, 20, 230),
]


def make_video(
    path: Path,
    seconds: int = 4,
    fps: int = 5,
    size: tuple[int, int] = (64, 48),
    codec: str = "mpeg4",
    times: list[float] | None = None,
) -> Path:
    """Encode a test video whose frames during second ``s`` are ``COLOURS[s]``.

    ``times`` (seconds) overrides the regular ``i / fps`` timestamps (variable frame rate).
    """
    width, height = size
    if times is None:
        times = [i / fps for i in range(seconds * fps)]
    tb = Fraction(1, 1000)
    with av.open(str(path), mode="w") as out:
        stream: Any = out.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = tb
        stream.codec_context.time_base = tb
        for t in times:
            img = np.empty((height, width, 3), dtype=np.uint8)
            img[:] = COLOURS[int(t) % len(COLOURS)]
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = round(t * 1000)
            frame.time_base = tb
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def colour_index(frame: torch.Tensor) -> int:
    """Which of COLOURS a decoded frame (H, W, 3) is closest to."""
    mean = frame.reshape(-1, 3).float().mean(0)
    dist = ((torch.tensor(COLOURS, dtype=torch.float32) - mean) ** 2).sum(1)
    return int(dist.argmin())


@pytest.mark.parametrize(
    ("suffix", "codec"),
    [(".mp4", "mpeg4"), (".mp4", "libx264"), (".webm", "libvpx"), (".mkv", "ffv1")],
)
def test_probe_and_read_frames_in_requested_order(tmp_path: Path, suffix: str, codec: str) -> None:
    path = make_video(tmp_path / f"v{suffix}", seconds=4, fps=5, codec=codec)
    info = probe(path)
    assert (info.width, info.height) == (64, 48)
    assert info.num_frames == 20
    assert info.fps == pytest.approx(5.0)
    assert info.duration == pytest.approx(4.0, abs=0.21)
    frames = read_frames(path, [17, 0, 5, 5, 12])
    assert frames.shape == (5, 48, 64, 3) and frames.dtype == torch.uint8
    # frame i is shown during second i // 5
    assert [colour_index(f) for f in frames] == [3, 0, 1, 1, 2]


def test_read_frames_out_of_range_names_file(tmp_path: Path) -> None:
    path = make_video(tmp_path / "short.mp4", seconds=1, fps=5)
    with pytest.raises(VideoDecodeError, match=r"short\.mp4.*frame index 9 out of range"):
        read_frames(path, [0, 9])


def test_iter_clips_counts_timestamps_and_colours(tmp_path: Path) -> None:
    # 5 s at 5 fps, 2 s clips -> 3 clips (last one partial: [4, 5)), 4 frames per clip.
    path = make_video(tmp_path / "v.mp4", seconds=5, fps=5, codec="libx264")
    chunks = list(iter_clips(path, clip_length=2.0, frames_per_clip=4, chunk_size=2))
    assert [c.first_clip for c in chunks] == [0, 2]
    frames = torch.cat([c.frames for c in chunks])
    assert frames.shape == (3, 4, 48, 64, 3)
    times = np.concatenate([c.times for c in chunks])
    np.testing.assert_allclose(times, clip_sample_times(3, 2.0, 4, 5.0))
    np.testing.assert_allclose(times[0], [0.25, 0.75, 1.25, 1.75])
    np.testing.assert_allclose(times[2], [4.125, 4.375, 4.625, 4.875])
    used = np.concatenate([c.frame_times for c in chunks])
    # the frame used is the last one at or before the target, on the 0.2 s grid
    np.testing.assert_allclose(used, np.floor(times * 5 + 1e-9) / 5, atol=1e-6)
    colours = [[colour_index(f) for f in clip] for clip in frames]
    assert colours == [[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 4, 4]]


def test_iter_clips_variable_frame_rate_uses_timestamps(tmp_path: Path) -> None:
    # Dense frames in second 0, one frame in second 1, dense again in second 2.
    vfr = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0, 2.1, 2.2, 2.5, 2.9]
    path = make_video(tmp_path / "vfr.mkv", codec="ffv1", fps=10, times=vfr)
    chunks = list(iter_clips(path, clip_length=1.0, frames_per_clip=2, duration=3.0))
    used = np.concatenate([c.frame_times for c in chunks])
    np.testing.assert_allclose(used, [[0.2, 0.7], [1.0, 1.0], [2.2, 2.5]], atol=1e-6)
    frames = torch.cat([c.frames for c in chunks])
    assert [[colour_index(f) for f in clip] for clip in frames] == [[0, 0], [1, 1], [2, 2]]


def test_iter_clips_transform_applied_once_per_used_frame(tmp_path: Path) -> None:
    # 1 fps video, 4 frames per 1-s clip -> each decoded frame feeds 4 targets.
    path = make_video(tmp_path / "slow.mp4", seconds=3, fps=1)
    calls: list[tuple[int, ...]] = []

    def transform(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return x.permute(2, 0, 1).float()

    chunks = list(iter_clips(path, 1.0, 4, transform=transform))
    assert len(calls) == 3
    assert chunks[0].frames.shape == (3, 4, 3, 48, 64)


def test_corrupt_and_missing_files_raise_decode_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video at all" * 50)
    with pytest.raises(VideoDecodeError, match=r"bad\.mp4") as info:
        probe(bad)
    assert isinstance(info.value, SidetuneError)
    with pytest.raises(VideoDecodeError, match=r"bad\.mp4"):
        list(iter_clips(bad, 2.0, 4, duration=4.0))
    with pytest.raises(VideoDecodeError, match=r"missing\.mp4: cannot decode video: no such file"):
        read_frames(tmp_path / "missing.mp4", [0])


def test_truncated_file_is_an_error_or_fewer_frames(tmp_path: Path) -> None:
    good = make_video(tmp_path / "good.mp4", seconds=4, fps=5)
    data = good.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    # mp4 with its index cut off cannot be opened at all; it must say so, naming the file.
    with pytest.raises(VideoDecodeError, match=r"cut\.mp4"):
        read_frames(cut, list(range(20)))


def test_truncated_stream_is_reported_not_padded(tmp_path: Path) -> None:
    # Matroska keeps its duration in the header, so a cut file still claims 10 s.
    good = make_video(tmp_path / "good.mkv", seconds=10, fps=5, codec="ffv1")
    data = good.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 4 // 10])
    assert probe(cut).duration == pytest.approx(10.0, abs=0.3)
    with pytest.raises(VideoDecodeError, match=r"cut\.mkv: .*frames stop at .*truncated file"):
        list(iter_clips(cut, 1.0, 2))
    # the intact file decodes to the end
    assert sum(c.frames.shape[0] for c in iter_clips(good, 1.0, 2)) == 10


def test_scaled_size_keeps_aspect_and_never_enlarges() -> None:
    from sidetune.video.decode import scaled_size

    assert scaled_size(2160, 3840, 256) == (256, 455)
    assert scaled_size(3840, 2160, 256) == (455, 256)  # portrait
    assert scaled_size(240, 320, 256) is None and scaled_size(2160, 3840, None) is None


_PEAK_SCRIPT = """
import json, sys
from sidetune.video.decode import read_frames
def status_mb(key):  # this process's own counters (ru_maxrss may carry the parent's peak)
    with open("/proc/self/status") as fh:
        return next(int(x.split()[1]) for x in fh if x.startswith(key)) / 1024
before = status_mb("VmRSS:")
short, n = int(sys.argv[2]) or None, int(sys.argv[3])
x = read_frames(sys.argv[1], list(range(n)), short)
print(json.dumps({"shape": list(x.shape), "peak_mb": status_mb("VmHWM:") - before}))
"""


@pytest.mark.slow  # about 20 s on the 2-core CPU: encodes 16 4K frames, two fresh processes
def test_4k_clip_is_decoded_at_the_needed_size_in_bounded_memory(tmp_path: Path) -> None:
    """A 3840x2160 clip: frames come out at 256 px and the peak memory stays small.

    Peak RSS of a fresh process above its level before the read (this includes the
    decoder's own 4K buffers, about 75 MB measured for a single frame); the same read at full
    resolution is measured as the contrast (24.9 MB per frame, plus the stacked copy).
    """
    import json
    import subprocess
    import sys

    path = make_video(tmp_path / "uhd.mp4", seconds=4, fps=4, size=(3840, 2160))
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}

    def run(short_side: int, frames: int) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-c", _PEAK_SCRIPT, str(path), str(short_side), str(frames)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    scaled, full = run(256, 16), run(0, 8)
    assert scaled["shape"] == [16, 256, 455, 3] and full["shape"] == [8, 2160, 3840, 3]
    assert full["peak_mb"] > 300, full  # the contrast: what source resolution costs
    assert scaled["peak_mb"] < 160, scaled
    print(
        f"peak above start: 16 frames at 256 px {scaled['peak_mb']:.0f} MB, 8 at 4K {full['peak_mb']:.0f} MB"
    )
