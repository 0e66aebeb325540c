"""Fixtures of the app tests: a tiny real mp4, a fake grounder that follows the contract."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest


def write_mp4(path: Path, seconds: float = 4.0, fps: int = 10, size: int = 64) -> Path:
    """A small H.264 mp4 (yuv420p, plays in Chromium) with a moving bright square."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.zeros((size, size, 3), np.uint8)
            x = (4 * i) % (size - 16)
            img[24:40, x : x + 16] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@dataclass
class FakeResult:
    query: str
    duration: float

    def to_dict(self) -> dict[str, Any]:
        d = self.duration
        return {
            "query": self.query,
            "moments": [[0.25 * d, 0.5 * d, 0.9], [0.0, 0.125 * d, 0.4]],
            "saliency": [0.1, 0.8, 0.3, 0.2],
            "clip_len": d / 4,
            "duration": d,
        }


class FakeGrounder:
    """Contract-shaped stand-in for ``Grounder``: counts decodes per video, can be held."""

    def __init__(self) -> None:
        self.calls: list[tuple[Path, str]] = []
        self.decoded: set[Path] = set()
        self.gate = threading.Event()
        self.gate.set()

    def ground(
        self, video_path: Any, queries: str | list[str], *, progress: Any = None
    ) -> list[Any]:
        from sidetune.grounding.annotations import AnnotationError

        path = Path(video_path)
        query = queries if isinstance(queries, str) else queries[0]
        if "boom" in query:
            raise AnnotationError("query: the fake grounder refuses 'boom'")
        if progress is not None and path not in self.decoded:
            progress("decode+extract", 0.5)
        self.gate.wait(10)
        self.decoded.add(path)
        self.calls.append((path, query))
        with av.open(str(path)) as c:
            duration = float(c.duration or 0) / 1e6
        if progress is not None:
            progress("model", 1.0)
        return [FakeResult(query, duration)]


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    return write_mp4(folder / "tiny.mp4")
