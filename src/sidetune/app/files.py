"""Which files the app may read, and the uploads it receives.

Only paths that resolve (symlinks followed) inside one of the allowed roots can be opened;
anything else, ``..`` included, is :class:`Forbidden` (HTTP 403). Uploads stream into a private
temporary directory, are refused past a size limit, must look like a video container and
must open with PyAV; the directory is removed when the app stops.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from sidetune.errors import SidetuneError

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi")
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class Forbidden(SidetuneError, PermissionError):
    """A path outside the allowed directories (HTTP 403)."""


class UploadError(SidetuneError, ValueError):
    """An upload the app refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_size(text: str) -> int:
    """``"2GB"``, ``"500M"``, ``"1048576"`` -> bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if m is None:
        raise SidetuneError(f"--max-upload: cannot read size {text!r} (e.g. 2GB, 500MB, 1048576)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def resolve_allowed(path: str | os.PathLike[str], roots: Iterable[Path]) -> Path:
    """The resolved path if it lies inside one of ``roots``; raises :class:`Forbidden`."""
    real = Path(os.path.realpath(path))
    for root in roots:
        if real == root or real.is_relative_to(root):
            return real
    raise Forbidden(f"{path}: outside the directories this server may read")


def list_videos(roots: Sequence[Path], limit: int = 2000) -> list[Path]:
    """Video files under ``roots`` (recursive, sorted, at most ``limit``)."""
    found: list[Path] = []
    for root in roots:
        if root.is_file():
            found.append(root)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                if name.lower().endswith(VIDEO_SUFFIXES):
                    found.append(Path(dirpath) / name)
                    if len(found) >= limit:
                        return found
    return found


def sniff_container(head: bytes) -> str | None:
    """The container a file's first bytes announce (mp4/mov, matroska/webm, avi), or None."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


def probe_video(path: Path, name: str) -> float:
    """Open with PyAV and decode one frame; returns the duration in seconds (0 if unknown)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UploadError(f"{name}: the file has no video stream")
            stream = container.streams.video[0]
            next(container.decode(stream))
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            return float(container.duration or 0) / 1e6
    except UploadError:
        raise
    except (av.error.FFmpegError, StopIteration, OSError, ValueError) as exc:  # type: ignore[attr-defined]
        raise UploadError(
            f"{name}: cannot decode this video ({type(exc).__name__}: {exc})"
        ) from None


class UploadStore:
    """Uploaded videos in a private temp dir: one upload at a time, ``keep`` kept at most."""

    def __init__(self, max_bytes: int, keep: int = 8) -> None:
        self.max_bytes = max_bytes
        self.dir: Path | None = None  # made at the first upload: an app never served leaves none
        self._keep = keep
        self._files: dict[str, tuple[Path, str]] = {}  # id -> (path, original name)
        self._busy = threading.Lock()

    def begin(self, name: str, length: int | None) -> tuple[str, Path]:
        """Reserve the single upload slot; checks name and declared size before any byte."""
        if Path(name).suffix.lower() not in VIDEO_SUFFIXES:
            raise UploadError(
                f"{name}: not a video file name (accepted: {', '.join(VIDEO_SUFFIXES)})", 415
            )
        if length is not None and length > self.max_bytes:
            raise UploadError(
                f"{name}: {length} bytes is over the upload limit of {self.max_bytes} bytes "
                "(sidetune serve --max-upload)",
                413,
            )
        if not self._busy.acquire(blocking=False):
            raise UploadError(
                "another upload is being received and checked; try again when it has finished",
                409,
            )
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="sidetune-serve-"))
        upload_id = uuid.uuid4().hex[:12]
        return upload_id, self.dir / f"{upload_id}{Path(name).suffix.lower()}"

    def finish(self, upload_id: str, path: Path, name: str, ok: bool) -> None:
        """Release the slot; keep the file if ``ok`` (dropping the oldest past ``keep``)."""
        try:
            if not ok:
                path.unlink(missing_ok=True)
                return
            self._files[upload_id] = (path, name)
            while len(self._files) > self._keep:
                old = next(iter(self._files))
                self._files.pop(old)[0].unlink(missing_ok=True)
        finally:
            self._busy.release()

    def get(self, upload_id: str) -> tuple[Path, str]:
        if upload_id not in self._files:
            raise UploadError(
                f"upload {upload_id!r}: unknown or expired; upload the file again", 404
            )
        return self._files[upload_id]

    def busy(self) -> bool:
        return self._busy.locked()

    def cleanup(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        self._files.clear()
