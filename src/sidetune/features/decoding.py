"""Decoding for extraction: videos -> batches of transformed clips, in worker processes.

:class:`ClipStream` turns a list of videos into a stream of :class:`DecodedChunk` items: the
clips of one video in batches of at most ``batch_size`` (already resized and normalised by the
backbone's transform), then an end marker carrying the video's failure, if any.
:func:`decoded_chunks` runs the stream in ``workers`` DataLoader processes (each decodes whole
videos: worker ``w`` takes videos ``w, w + workers, ...``), pinning the batches when they go to a
GPU; with ``workers=0`` it decodes in a background thread of this process (PyAV releases the
GIL), which is enough when the backbone is the bottleneck (CPU, small GPUs).

Chunks of different videos interleave; each video's chunks arrive in order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from sidetune.video.decode import VideoDecodeError, iter_clips
from sidetune.video.transforms import VideoTransform

T = TypeVar("T")


@dataclass
class DecodedChunk:
    """``frames``: ``(C, N, 3, S, S)`` clips ``first_clip ..`` of video ``vid``; ``None`` in the
    end marker (``done=True``), whose ``error`` says why the video could not be decoded."""

    vid: str
    frames: torch.Tensor | None
    first_clip: int = 0
    done: bool = False
    error: str | None = None

    def pin_memory(self) -> DecodedChunk:  # called by the DataLoader's pinning thread
        if self.frames is not None:
            self.frames = self.frames.pin_memory()
        return self


class ClipStream(IterableDataset[DecodedChunk]):
    """The clips of ``videos`` (``(vid, path)`` pairs) as :class:`DecodedChunk` batches."""

    def __init__(
        self,
        videos: Sequence[tuple[str, Path]],
        *,
        clip_length: float,
        frames_per_clip: int,
        transform: VideoTransform,
        batch_size: int,
    ) -> None:
        self.videos = list(videos)
        self.clip_length = clip_length
        self.frames_per_clip = frames_per_clip
        self.transform = transform
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[DecodedChunk]:
        info = get_worker_info()
        mine = self.videos if info is None else self.videos[info.id :: info.num_workers]
        for vid, path in mine:
            yield from self.decode(vid, path)

    def decode(self, vid: str, path: Path) -> Iterator[DecodedChunk]:
        try:
            for chunk in iter_clips(
                path,
                self.clip_length,
                self.frames_per_clip,
                transform=self.transform,
                chunk_size=self.batch_size,
            ):
                yield DecodedChunk(vid, chunk.frames, first_clip=chunk.first_clip)
        except VideoDecodeError as exc:
            yield DecodedChunk(vid, None, done=True, error=str(exc))
            return
        yield DecodedChunk(vid, None, done=True)


def decoded_chunks(stream: ClipStream, workers: int, pin_memory: bool) -> Iterator[DecodedChunk]:
    """Iterate ``stream`` decoded by ``workers`` processes (0: one background thread)."""
    if workers <= 0 or len(stream.videos) == 0:
        items = iter(stream)
        yield from prefetch((c.pin_memory() for c in items) if pin_memory else items)
        return
    loader = DataLoader(
        stream,
        batch_size=None,
        num_workers=min(workers, len(stream.videos)),
        pin_memory=pin_memory,
        prefetch_factor=2,
        persistent_workers=False,
    )
    yield from loader


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` in a background thread, up to ``depth`` items ahead.

    PyAV releases the GIL while decoding, so decode + resize overlap the forward pass.
    Exceptions raised by the producer are re-raised in the consumer.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as exc:  # handed to the consumer thread
            q.put(("error", exc))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # drain so a blocked producer can finish
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
