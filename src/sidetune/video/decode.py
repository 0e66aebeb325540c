"""Video decoding with PyAV: probe, frames by index, and clip-by-clip streaming.

Three entry points:

* :func:`probe` reads container metadata (frame count, fps, duration, size) without decoding.
* :func:`read_frames` decodes forward once and keeps only the requested frame indices
  (action recognition: segment sampling picks indices, then asks for them).
* :func:`iter_clips` streams a whole video as fixed-length clips of ``N`` frames each, chunk by
  chunk, so a long video never sits in memory (grounding feature extraction).

Frames are placed on the timeline by their presentation timestamp ``pts * time_base`` minus the
stream start, never by ``index / fps``, so variable-frame-rate files are handled: the frame
used for a target time is the one on screen at that time (the last frame with ``t <= target``).

Every failure (missing file, not a video, corrupt stream, no decodable frame) raises
:class:`VideoDecodeError`, whose message starts with the file path.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from sidetune.errors import SidetuneError
from sidetune.video.sampling import clip_sample_times, num_clips_for

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4",
    ".webm",
    ".mkv",
    ".avi",
    ".mov",
    ".m4v",
    ".flv",
    ".mpg",
    ".mpeg",
)

FrameTransform = Callable[[torch.Tensor], torch.Tensor]
"""Maps one uint8 frame ``(H, W, 3)`` to whatever the model wants (e.g. float ``(3, S, S)``)."""


class VideoDecodeError(SidetuneError):
    """A video could not be opened or decoded. ``.path`` is the file, ``.reason`` the cause."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: cannot decode video: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """Container metadata of the first video stream.

    ``num_frames`` comes from the header when present, otherwise from counting packets (no
    decoding); ``duration`` is in seconds; ``fps`` is the average frame rate.
    """

    path: Path
    num_frames: int
    fps: float
    duration: float
    width: int
    height: int


@dataclass
class ClipChunk:
    """A run of consecutive clips from :func:`iter_clips`.

    ``first_clip``: index of the first clip in the chunk; ``frames``: ``(C, N, ...)`` — the
    stacked per-frame outputs of the transform (``(C, N, H, W, 3)`` uint8 without one);
    ``times``: ``(C, N)`` float64, the target timestamps (seconds) the frames were taken for;
    ``frame_times``: ``(C, N)`` float64, the timestamps of the frames actually used.
    """

    first_clip: int
    frames: torch.Tensor
    times: np.ndarray
    frame_times: np.ndarray

    @property
    def clip_ids(self) -> range:
        return range(self.first_clip, self.first_clip + self.frames.shape[0])


@contextlib.contextmanager
def _open_video(path: str | os.PathLike[str]) -> Iterator[tuple[Any, Any]]:
    """Open ``path`` and yield ``(container, first video stream)``; errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise VideoDecodeError(p, "no such file")
    try:
        container = av.open(str(p), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise VideoDecodeError(p, f"not a readable media file ({_why(exc)})") from exc
    try:
        if not container.streams.video:
            raise VideoDecodeError(p, "the file has no video stream")
        stream = container.streams.video[0]
        yield container, stream
    except av.FFmpegError as exc:
        raise VideoDecodeError(p, f"decoding failed ({_why(exc)})") from exc
    finally:
        container.close()


def _why(exc: BaseException) -> str:
    """The cause without the file name (the error message already starts with it)."""
    return str(getattr(exc, "strerror", None) or exc)


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _stream_fps(stream: Any) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and float(rate) > 0:
            return float(rate)
    return 0.0


def _stream_start(stream: Any) -> float:
    start = _seconds(stream.start_time, stream.time_base)
    return start if start is not None and math.isfinite(start) else 0.0


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Read the metadata of ``path``'s first video stream (no frame is decoded).

    When the header lacks a frame count or duration (common for webm/mkv), the packets are
    demuxed once to count frames and find the last timestamp.
    """
    with _open_video(path) as (container, stream):
        fps = _stream_fps(stream)
        num_frames = int(stream.frames or 0)
        duration = _seconds(stream.duration, stream.time_base)
        if duration is None and container.duration is not None:
            duration = container.duration / av.time_base
        if num_frames <= 0 or not duration or duration <= 0:
            counted, end = _scan_packets(container, stream)
            num_frames = num_frames if num_frames > 0 else counted
            if not duration or duration <= 0:
                duration = end
        if (not duration or duration <= 0) and fps > 0:
            duration = num_frames / fps
        ctx = stream.codec_context
        return VideoInfo(
            path=Path(path),
            num_frames=int(num_frames),
            fps=fps,
            duration=float(duration or 0.0),
            width=int(ctx.width or 0),
            height=int(ctx.height or 0),
        )


def _scan_packets(container: Any, stream: Any) -> tuple[int, float]:
    """Demux (not decode) every packet: ``(number of video packets, end time in seconds)``."""
    count, end = 0, 0.0
    start = _stream_start(stream)
    for packet in container.demux(stream):
        if packet.size == 0:  # the flush packet at the end
            continue
        count += 1
        t = _seconds(packet.pts, packet.time_base)
        if t is not None:
            dur = _seconds(packet.duration, packet.time_base) or 0.0
            end = max(end, t - start + dur)
    return count, end


def _decoded(path: Path, container: Any, stream: Any) -> Iterator[tuple[float, Any]]:
    """Yield ``(seconds since stream start, av.VideoFrame)`` in presentation order.

    Timestamps are made non-decreasing (a broken pts never moves time backwards); a frame
    without pts gets the previous time plus one frame period.
    """
    stream.thread_type = "AUTO"
    start = _stream_start(stream)
    fps = _stream_fps(stream)
    period = 1.0 / fps if fps > 0 else 0.0
    last = -math.inf
    try:
        for frame in container.decode(stream):
            t = _seconds(frame.pts, frame.time_base or stream.time_base)
            t = (last + period if last > -math.inf else 0.0) if t is None else t - start
            last = max(t, last)
            yield last, frame
    except av.FFmpegError as exc:
        raise VideoDecodeError(path, f"decoding failed after {last:.3f} s ({_why(exc)})") from exc


def _to_tensor(frame: Any, short_side: int | None = None) -> torch.Tensor:
    """uint8 ``(H, W, 3)``; with ``short_side``, scaled down by the decoder's own scaler first."""
    size = scaled_size(frame.height, frame.width, short_side)
    if size is None:
        return torch.from_numpy(frame.to_ndarray(format="rgb24"))
    h, w = size
    # AREA: averaging (no aliasing) when shrinking, e.g. 4K -> 256 px in one step.
    small = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA")
    return torch.from_numpy(small.to_ndarray())


def scaled_size(height: int, width: int, short_side: int | None) -> tuple[int, int] | None:
    """``(h, w)`` with the shorter side ``short_side`` and the aspect ratio kept (the rounding
    of ``recognition.transforms.resize_short_side``); None when no shrinking is needed.

    Never enlarges: a source already at or below ``short_side`` is decoded as it is.
    """
    if short_side is None or min(height, width) <= short_side:
        return None
    scale = short_side / min(height, width)
    return max(short_side, round(height * scale)), max(short_side, round(width * scale))


def _check_not_truncated(path: Path, last_t: float, duration: float, clip_length: float) -> None:
    """Frames ending well before the header's duration mean a cut-off or corrupt file.

    A short shortfall (up to two clips or 10 % of the video) is normal — container durations
    count the last frame's display time, audio, or rounding — and is filled with the last frame.
    """
    slack = max(2.0 * clip_length, 0.1 * duration)
    if duration - last_t > slack:
        raise VideoDecodeError(
            path,
            f"frames stop at {last_t:.2f} s but the video should last {duration:.2f} s (truncated file?)",
        )


def read_frames(
    path: str | os.PathLike[str], indices: Sequence[int], short_side: int | None = None
) -> torch.Tensor:
    """Frames ``indices`` (0-based, in decode / presentation order) as uint8 ``(N, H, W, 3)``.

    The output follows the order asked (repeats allowed). Decoding runs forward once and stops
    after the largest index; only requested frames are converted and kept. An index past the
    last decodable frame raises :class:`VideoDecodeError`.

    ``short_side``: frames whose shorter side is larger are scaled down to it (aspect kept,
    see :func:`scaled_size`) as they are converted, so the memory held does not grow with the
    source resolution (a 4K frame is 24 MB as RGB, 0.35 MB at 256 px).
    """
    p = Path(path)
    wanted = [int(i) for i in indices]
    if not wanted:
        raise ValueError("read_frames: no indices given")
    if min(wanted) < 0:
        raise VideoDecodeError(p, f"negative frame index {min(wanted)}")
    needed = set(wanted)
    last_needed = max(wanted)
    kept: dict[int, torch.Tensor] = {}
    count = 0
    with _open_video(p) as (container, stream):
        for i, (_, frame) in enumerate(_decoded(p, container, stream)):
            count = i + 1
            if i in needed:
                kept[i] = _to_tensor(frame, short_side)
            if i >= last_needed:
                break
    if count == 0:
        raise VideoDecodeError(p, "no decodable video frame")
    if last_needed >= count:
        raise VideoDecodeError(
            p, f"frame index {last_needed} out of range: only {count} frames could be decoded"
        )
    return torch.stack([kept[i] for i in wanted])


def iter_clips(
    path: str | os.PathLike[str],
    clip_length: float,
    frames_per_clip: int,
    *,
    transform: FrameTransform | None = None,
    chunk_size: int = 16,
    duration: float | None = None,
) -> Iterator[ClipChunk]:
    """Stream ``path`` as clips of ``clip_length`` seconds with ``frames_per_clip`` frames each.

    The number of clips is ``num_clips_for(duration, clip_length)`` with ``duration`` taken
    from :func:`probe` unless given. Frame ``j`` of clip ``i`` is the frame on screen at
    ``clip_sample_times(...)[i, j]`` (uniform within the clip). Each used frame is converted
    (and transformed) once, even when several targets share it (low-fps video), and at most
    ``chunk_size`` clips are held before being yielded.
    """
    p = Path(path)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if duration is None:
        duration = probe(p).duration
    num_clips = num_clips_for(duration, clip_length)
    targets = clip_sample_times(num_clips, clip_length, frames_per_clip, duration).reshape(-1)
    total = targets.size
    per_chunk = chunk_size * frames_per_clip

    pending: list[torch.Tensor] = []
    pending_t: list[float] = []
    k = 0  # next target to fill
    chunk_start = 0  # first target of the chunk being built

    def convert(frame: Any) -> torch.Tensor:
        x = _to_tensor(frame)
        return transform(x) if transform is not None else x

    def make_chunk(end: int) -> ClipChunk:
        n_clips = (end - chunk_start) // frames_per_clip
        frames = torch.stack(pending).reshape(n_clips, frames_per_clip, *pending[0].shape)
        return ClipChunk(
            first_clip=chunk_start // frames_per_clip,
            frames=frames,
            times=targets[chunk_start:end].reshape(n_clips, frames_per_clip),
            frame_times=np.asarray(pending_t, dtype=np.float64).reshape(n_clips, frames_per_clip),
        )

    shown: Any = None  # frame on screen before the current one
    shown_t = 0.0
    shown_x: torch.Tensor | None = None  # cached conversion of `shown`
    with _open_video(p) as (container, stream):
        for t, frame in _decoded(p, container, stream):
            if shown is None:  # targets before the first frame get the first frame
                shown, shown_t, shown_x = frame, t, None
            while k < total and targets[k] < t:
                if shown_x is None:
                    shown_x = convert(shown)
                pending.append(shown_x)
                pending_t.append(shown_t)
                k += 1
                if len(pending) == per_chunk:
                    yield make_chunk(k)
                    pending, pending_t, chunk_start = [], [], k
            if k >= total:
                break
            shown, shown_t, shown_x = frame, t, None
        if shown is None:
            raise VideoDecodeError(p, "no decodable video frame")
        if k < total:
            _check_not_truncated(p, shown_t, duration, clip_length)
        while k < total:  # targets after the last frame get the last frame
            if shown_x is None:
                shown_x = convert(shown)
            pending.append(shown_x)
            pending_t.append(shown_t)
            k += 1
            if len(pending) == per_chunk:
                yield make_chunk(k)
                pending, pending_t, chunk_start = [], [], k
    if pending:
        yield make_chunk(k)
