"""Action-recognition data: video lists, labels, TSN segment sampling with local windows, dataset.

List formats (one video per line, whitespace separated, ``#`` comments and blank lines skipped):

* ``path num_frames label`` -- a folder of JPEG frames (SSv1 style), files named by
  ``frame_template`` (``{:05d}.jpg``) numbered from ``frame_index_base``;
* ``path label`` -- a video file (SSv2 ``.webm``, K400 ``.mp4``), decoded with PyAV.

Labels CSV: ``id,name`` rows (a header row ``id,name`` is allowed), ids 0..C-1.

Sampling (per video of F frames, T segments, n local frames):

* train: TSN -- segment i covers frames ``[i F / T, (i + 1) F / T)``, one random frame in it;
* test: clip c of C takes the frame at fraction ``(c + 1) / (C + 1)`` of each segment (C = 1:
  the centre);
* each sampled frame j brings its local window ``j - n//2 .. j + n//2`` clamped to
  ``[0, F - 1]`` (repeating the end frames, never wrapping around).

Only the frames actually sampled are read (decoded or opened).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sidetune.errors import SidetuneError
from sidetune.recognition.official_transforms import OfficialTrainTransform
from sidetune.recognition.transforms import EvalTransform, TrainTransform


class VideoListError(SidetuneError, ValueError):
    """A malformed video list or labels file; the message names file:line."""


@dataclass(frozen=True)
class VideoRecord:
    """One row of a video list. ``num_frames`` is None for video files (probed when read)."""

    path: Path
    label: int
    num_frames: int | None
    source: str  # "file:line" for error messages


def parse_video_list(
    list_path: str | Path,
    root: str | Path | None = None,
    fmt: str = "auto",
    num_classes: int | None = None,
) -> list[VideoRecord]:
    """Read a video list; see the module docstring. Errors name ``file:line``."""
    list_path = Path(list_path)
    if not list_path.is_file():
        raise VideoListError(f"{list_path}: video list not found")
    base = Path(root) if root else list_path.parent
    records: list[VideoRecord] = []
    kind = None if fmt == "auto" else fmt
    with list_path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{list_path}:{lineno}"
            fields = line.split()
            row_kind = {2: "video", 3: "frames"}.get(len(fields))
            if row_kind is None:
                raise VideoListError(
                    f"{where}: expected 'path label' or 'path num_frames label', got {len(fields)} fields: {line!r}"
                )
            if kind is None:
                kind = row_kind
            if row_kind != kind:
                raise VideoListError(
                    f"{where}: {len(fields)} fields but this list holds {kind} rows "
                    f"({'path label' if kind == 'video' else 'path num_frames label'})"
                )
            try:
                label = int(fields[-1])
            except ValueError:
                raise VideoListError(f"{where}: label {fields[-1]!r} is not an integer") from None
            if label < 0 or (num_classes is not None and label >= num_classes):
                limit = f" (num_classes={num_classes})" if num_classes is not None else ""
                raise VideoListError(f"{where}: label {label} out of range{limit}")
            num_frames: int | None = None
            if kind == "frames":
                try:
                    num_frames = int(fields[1])
                except ValueError:
                    raise VideoListError(
                        f"{where}: num_frames {fields[1]!r} is not an integer"
                    ) from None
                if num_frames < 1:
                    raise VideoListError(f"{where}: num_frames must be >= 1, got {num_frames}")
            records.append(VideoRecord(base / fields[0], label, num_frames, where))
    if not records:
        raise VideoListError(f"{list_path}: no videos listed")
    return records


def load_label_names(path: str | Path) -> list[str]:
    """Class names from a CSV of ``id,name`` rows (optional header); ids must be 0..C-1."""
    path = Path(path)
    if not path.is_file():
        raise VideoListError(f"{path}: labels file not found")
    names: dict[int, str] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise VideoListError(f"{path}:{lineno}: expected 'id,name', got {row!r}")
            head = row[0].strip()
            if lineno == 1 and not head.lstrip("-").isdigit():
                continue  # header
            try:
                idx = int(head)
            except ValueError:
                raise VideoListError(f"{path}:{lineno}: id {head!r} is not an integer") from None
            if idx in names:
                raise VideoListError(f"{path}:{lineno}: duplicate id {idx}")
            names[idx] = ",".join(row[1:]).strip()
    if not names:
        raise VideoListError(f"{path}: no labels")
    missing = sorted(set(range(len(names))) - set(names))
    if missing:
        raise VideoListError(f"{path}: ids must be 0..{len(names) - 1}; missing {missing[:10]}")
    return [names[i] for i in range(len(names))]


# ---------------------------------------------------------------------------------------------
# sampling


def train_segment_indices(
    num_frames: int, num_segments: int, rng: np.random.Generator
) -> np.ndarray:
    """TSN training indices: one random frame in each of ``num_segments`` equal segments.

    A video shorter than ``num_segments`` uses every frame once plus random repeats, sorted.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_frames < num_segments:
        extra = rng.integers(0, num_frames, size=num_segments - num_frames)
        return np.sort(np.concatenate([np.arange(num_frames), extra])).astype(np.int64)
    ticks = (np.arange(num_segments + 1) * num_frames) // num_segments
    return (
        ticks[:-1] + (rng.random(num_segments) * (ticks[1:] - ticks[:-1])).astype(np.int64)
    ).astype(np.int64)


def eval_segment_indices(num_frames: int, num_segments: int, num_clips: int = 1) -> np.ndarray:
    """Deterministic indices, shape ``(num_clips, num_segments)``: clip c at fraction (c+1)/(C+1)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    seg = num_frames / num_segments
    frac = (np.arange(num_clips) + 1.0) / (num_clips + 1.0)
    idx = np.floor(np.arange(num_segments)[None, :] * seg + frac[:, None] * seg).astype(np.int64)
    return np.clip(idx, 0, num_frames - 1)


def official_train_indices(
    num_frames: int, num_segments: int, protocol: str, rng: np.random.Generator
) -> np.ndarray:
    """The authors' training indices, ``(T,)``: ``ssv2`` is TSN (:func:`train_segment_indices`,
    as ``sth.py``); ``k400`` (``kinetics.py``) draws segment i uniformly from the inclusive range
    ``[round(i s), round((i + 1) s)]``, ``s = (F - 1) / T``."""
    if protocol != "k400":
        return train_segment_indices(num_frames, num_segments, rng)
    seg = float(num_frames - 1) / num_segments
    lo = np.round(seg * np.arange(num_segments)).astype(np.int64)
    hi = np.round(seg * np.arange(1, num_segments + 1)).astype(np.int64)
    return lo + (rng.random(num_segments) * (hi - lo + 1)).astype(np.int64)


def official_test_indices(
    num_frames: int, num_segments: int, num_clips: int = 1, protocol: str = "ssv2"
) -> np.ndarray:
    """The authors' test indices (``datasets/sth.py`` / ``kinetics.py``), ``(num_clips, T)``, 0-based.

    * ``ssv2`` (Something-Something, ``sth.py``): with ``s = (F - 1) / T``, clip c of C takes
      ``round(i s) + int(s (c + 1) / (C + 1))`` (numpy rounding, halves to even); one clip is
      the validation sampling ``round(i s) + int(s / 2)``. Short videos repeat frames.
    * ``k400`` (``kinetics.py``): with ``tick = F / T``, clip c starts at
      ``int(linspace(0, tick - 1, C)[c])`` and takes ``int(start + tick i) % F``; one clip is
      ``int(tick i)``.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    i = np.arange(num_segments)
    if protocol == "ssv2":
        seg = float(num_frames - 1) / num_segments
        duration = seg / (num_clips + 1)
        rows = [
            np.round(seg * i).astype(np.int64) + int(duration * (c + 1)) for c in range(num_clips)
        ]
    elif protocol == "k400":
        tick = num_frames / float(num_segments)
        starts = np.linspace(0, tick - 1, num=num_clips, dtype=int).tolist()
        rows = [np.array([int(s + tick * x) % num_frames for x in i.tolist()]) for s in starts]
    else:
        raise ValueError(f"unknown test protocol {protocol!r} (ssv2 | k400)")
    return np.stack(rows).astype(np.int64)


def official_local_windows(
    indices: np.ndarray, num_local: int, num_frames: int, wrap_start: bool
) -> np.ndarray:
    """The authors' n-frame windows around each index (``Video_dataset.get``), ``(..., n)``.

    The window starts at ``j - n // 2`` and advances one frame per step while it is before the
    last frame (then repeats it). Before the first frame, a frame folder repeats frame 0
    (``wrap_start=False``, their ``RGB`` modality, SSv1/SSv2); a video file indexes decord
    with a negative number and so wraps to the video's end (``wrap_start=True``, their
    ``video`` modality, K400).
    """
    idx = np.asarray(indices, dtype=np.int64)
    out = np.empty((*idx.shape, num_local), dtype=np.int64)
    p = idx - num_local // 2  # 0-based; theirs is p + 1
    for k in range(num_local):
        out[..., k] = np.where(p < 0, p + num_frames, p) if wrap_start else np.maximum(p, 0)
        p = np.where(p < num_frames - 1, p + 1, p)
    return np.clip(out, 0, num_frames - 1)


def local_windows(indices: np.ndarray, num_local: int, num_frames: int) -> np.ndarray:
    """``(..., n)`` windows ``j - n//2 .. j + n//2`` around each index, clamped to the video."""
    offsets = np.arange(num_local) - num_local // 2
    return np.clip(np.asarray(indices)[..., None] + offsets, 0, num_frames - 1).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# reading frames


def read_frame_folder(
    record: VideoRecord, indices: Sequence[int], template: str, base: int
) -> torch.Tensor:
    """JPEG frames ``indices`` (0-based) of a frame folder -> uint8 (N, H, W, 3)."""
    from PIL import Image

    cache: dict[int, torch.Tensor] = {}
    for i in sorted(set(int(i) for i in indices)):
        path = record.path / template.format(i + base)
        try:
            with Image.open(path) as im:
                cache[i] = torch.from_numpy(np.array(im.convert("RGB")))
        except (OSError, ValueError) as exc:
            raise VideoListError(f"{record.source}: cannot read frame {path}: {exc}") from exc
    return torch.stack([cache[int(i)] for i in indices])


def read_video_frames(
    record: VideoRecord, indices: Sequence[int], short_side: int | None = None
) -> torch.Tensor:
    """Frames ``indices`` of a video file (PyAV; decoded once, only the unique indices kept).

    ``short_side``: scale larger frames down to this shorter side while decoding.
    """
    from sidetune.video.decode import VideoDecodeError, read_frames

    unique = sorted(set(int(i) for i in indices))
    try:
        frames = read_frames(record.path, unique, short_side)
    except VideoDecodeError as exc:
        raise VideoListError(f"{record.source}: {exc}") from exc
    pos = {i: k for k, i in enumerate(unique)}
    return frames[[pos[int(i)] for i in indices]]


def video_num_frames(record: VideoRecord) -> int:
    if record.num_frames is not None:
        return record.num_frames
    from sidetune.video.decode import VideoDecodeError, probe

    try:
        n = probe(record.path).num_frames
    except VideoDecodeError as exc:
        raise VideoListError(f"{record.source}: {exc}") from exc
    if n < 1:
        raise VideoListError(f"{record.source}: {record.path} has no frames")
    return n


class VideoDataset(Dataset[dict[str, Any]]):
    """Videos of a list -> sampled, augmented clips.

    ``__getitem__`` returns ``{"frames", "label", "index"}``:

    * train: frames (T, n, 3, S, S) float, one random TSN sample, augmented (label may be
      swapped by a flip);
    * test: frames (V, T, n, 3, S, S) with V = num_clips * num_crops views (clip-major).
    """

    def __init__(
        self,
        records: list[VideoRecord],
        *,
        num_segments: int,
        num_local: int,
        train: bool,
        transform: TrainTransform | OfficialTrainTransform | EvalTransform,
        num_clips: int = 1,
        frame_template: str = "{:05d}.jpg",
        frame_index_base: int = 1,
        seed: int = 0,
        protocol: str = "tsn",
        num_sample: int = 1,
    ) -> None:
        self.records = records
        self.num_segments = num_segments
        self.num_local = num_local
        self.train = train
        self.transform = transform
        self.num_clips = num_clips
        self.frame_template = frame_template
        self.frame_index_base = frame_index_base
        self.seed = seed
        # frame sampling: tsn (ours) | ssv2 | k400 (the authors' sth.py / kinetics.py)
        self.protocol = protocol
        self.num_sample = num_sample  # training: augmented copies of each sampled clip
        self._num_frames: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.records)

    def num_frames(self, index: int) -> int:
        if index not in self._num_frames:
            self._num_frames[index] = video_num_frames(self.records[index])
        return self._num_frames[index]

    @property
    def decode_short_side(self) -> int:
        """The shorter side frames are decoded at (when larger): what the transform needs.

        Evaluation resizes the shorter side to ``transform.resize`` anyway; training crops
        from frames at the usual ``size * 256 / 224`` scale (256 for 224 inputs), the size the
        evaluation transform uses too, so a 4K source costs what a 256-px one does.
        """
        size = int(self.transform.size)
        return max(size * 256 // 224, int(getattr(self.transform, "resize", 0) or 0))

    def read(self, record: VideoRecord, indices: Sequence[int]) -> torch.Tensor:
        if record.num_frames is not None:
            return read_frame_folder(record, indices, self.frame_template, self.frame_index_base)
        return read_video_frames(record, indices, self.decode_short_side)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        nf = self.num_frames(index)
        if self.train:
            # torch's per-worker seed (set by the engine) drives the sampling and augmentation
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            if self.protocol == "tsn":
                idx = train_segment_indices(nf, self.num_segments, rng)[None]
                windows = local_windows(idx, self.num_local, nf)  # (1, T, n)
            else:
                idx = official_train_indices(nf, self.num_segments, self.protocol, rng)[None]
                windows = official_local_windows(idx, self.num_local, nf, self.protocol == "k400")
        elif self.protocol == "tsn":
            idx = eval_segment_indices(nf, self.num_segments, self.num_clips)
            windows = local_windows(idx, self.num_local, nf)  # (C, T, n)
        else:
            idx = official_test_indices(nf, self.num_segments, self.num_clips, self.protocol)
            windows = official_local_windows(idx, self.num_local, nf, self.protocol == "k400")
        frames = self.read(record, windows.reshape(-1).tolist())  # (C T n, H, W, 3)
        if self.train:
            assert not isinstance(self.transform, EvalTransform)
            self.transform.rng = random.Random(int(torch.randint(0, 2**62, ()).item()))
            clips, labels = [], []
            for _ in range(self.num_sample):  # repeated augmentation of one sampled clip
                x, label = self.transform(frames, record.label)
                clips.append(x.reshape(self.num_segments, self.num_local, *x.shape[1:]))
                labels.append(label)
            if self.num_sample == 1:
                return {"frames": clips[0], "label": labels[0], "index": index}
            return {"frames": torch.stack(clips), "label": labels, "index": index}
        assert isinstance(self.transform, EvalTransform)
        x = self.transform(frames)  # (K, C T n, 3, S, S)
        k = x.shape[0]
        x = x.reshape(k, self.num_clips, self.num_segments, self.num_local, *x.shape[2:])
        x = x.transpose(0, 1).flatten(0, 1)  # (C K, T, n, 3, S, S)
        return {"frames": x, "label": record.label, "index": index}


def collate_videos(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack samples: frames (B, [V,] T, n, 3, S, S), label (B,), index (B,).

    Repeated-augmentation samples (a list of R labels) become R consecutive batch rows, as the
    authors' ``multiple_samples_collate``: frames (B R, T, n, 3, S, S).
    """
    if samples and isinstance(samples[0]["label"], list):
        return {
            "frames": torch.cat([s["frames"] for s in samples]),
            "label": torch.tensor([int(v) for s in samples for v in s["label"]], dtype=torch.long),
            "index": torch.tensor(
                [int(s["index"]) for s in samples for _ in s["label"]], dtype=torch.long
            ),
        }
    return {
        "frames": torch.stack([s["frames"] for s in samples]),
        "label": torch.tensor([int(s["label"]) for s in samples], dtype=torch.long),
        "index": torch.tensor([int(s["index"]) for s in samples], dtype=torch.long),
    }
