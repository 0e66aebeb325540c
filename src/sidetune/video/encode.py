"""Writing mp4 files (H.264 with PyAV) for the rendered synthetic benchmarks of both tasks."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from sidetune.utils.io import atomic_path


def write_mp4(
    path: Path, frames: np.ndarray, fps: int, crf: int = 16, preset: str = "ultrafast"
) -> None:
    """Encode uint8 ``(F, H, W, 3)`` RGB frames as H.264 (yuv420p), atomically.

    ``crf`` / ``preset`` are libx264's quality and speed settings; H and W must be even.
    """
    import av

    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width = frames.shape[2]
        stream.height = frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
