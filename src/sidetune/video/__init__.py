"""Video decoding (PyAV), clip / segment sampling and torch image transforms."""

from sidetune.video.decode import (
    VIDEO_EXTENSIONS,
    ClipChunk,
    VideoDecodeError,
    VideoInfo,
    iter_clips,
    probe,
    read_frames,
)
from sidetune.video.sampling import clip_sample_times, frames_shown_at, num_clips_for
from sidetune.video.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VideoTransform,
)

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VIDEO_EXTENSIONS",
    "ClipChunk",
    "VideoDecodeError",
    "VideoInfo",
    "VideoTransform",
    "clip_sample_times",
    "frames_shown_at",
    "iter_clips",
    "num_clips_for",
    "probe",
    "read_frames",
]
