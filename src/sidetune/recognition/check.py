"""Pre-flight checks of a recognition config: unreadable videos found before epoch 1.

- :func:`screen_videos` (cheap; ``train`` runs it): opens every listed video's header (frame
  folders: the first and last frame files exist), which the dataset needs anyway for its frame
  counts, so they are cached. Unreadable videos stop the run with the list, or with
  ``data.skip_unreadable=true`` are dropped and counted; a video that fails later, mid-epoch,
  is then replaced by the next readable one instead of aborting an hours-long epoch.
- :func:`check_recognition` (``sidetune check``): labels, lists, and every video decoded at
  the frames a test pass samples.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from torch.utils.data import Dataset

from sidetune.recognition.data import (
    VideoDataset,
    VideoListError,
    VideoRecord,
    eval_segment_indices,
    load_label_names,
    local_windows,
    parse_video_list,
    video_num_frames,
)
from sidetune.utils.report import CheckReport

if TYPE_CHECKING:
    from sidetune.recognition.config import RecognitionConfig

T = TypeVar("T")
SHOW = 5  # unreadable videos listed in an error


def _progress(items: Sequence[T], desc: str, show: bool) -> Iterator[T]:
    if not show or len(items) < 50:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, leave=False, dynamic_ncols=True)


def _frames_of(record: VideoRecord, template: str, base: int) -> int:
    """Frame count: a video's header, or a frame folder's first and last files (stat only)."""
    if record.num_frames is None:
        return video_num_frames(record)
    for i in (0, record.num_frames - 1):
        path = record.path / template.format(i + base)
        if not path.is_file():
            raise VideoListError(f"{record.source}: frame file {path} not found")
    return record.num_frames


def unreadable(dataset: VideoDataset, desc: str, progress: bool = True) -> list[tuple[int, str]]:
    """``(index, message)`` of every record whose header cannot be read; caches frame counts."""
    bad = []
    for i in _progress(range(len(dataset)), desc, progress):  # type: ignore[arg-type]
        try:
            n = _frames_of(dataset.records[i], dataset.frame_template, dataset.frame_index_base)
        except VideoListError as exc:
            bad.append((i, str(exc)))
            continue
        dataset._num_frames[i] = n
    return bad


def _drop(dataset: VideoDataset, indices: set[int]) -> None:
    keep = [i for i in range(len(dataset)) if i not in indices]
    counts = dataset._num_frames
    dataset.records = [dataset.records[i] for i in keep]
    dataset._num_frames = {new: counts[old] for new, old in enumerate(keep) if old in counts}


class SkipUnreadable(Dataset[dict[str, Any]]):
    """A video dataset whose items fall back to the next readable video on a decode error.

    ``failed`` collects the messages (per worker process). Used with ``data.skip_unreadable``.
    """

    def __init__(self, dataset: VideoDataset) -> None:
        self.dataset = dataset
        self.failed: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.dataset)
        for step in range(n):
            i = (index + step) % n
            if i in self.failed:
                continue
            try:
                item = self.dataset[i]
            except VideoListError as exc:
                self.failed[i] = str(exc)
                print(f"warning: skipping unreadable video: {exc}", flush=True)
                continue
            return {**item, "index": index} if i != index else item
        raise VideoListError(f"no readable video left among {n}")


def screen_videos(
    train_set: VideoDataset,
    val_set: VideoDataset | None,
    skip_unreadable: bool,
    progress: bool = True,
) -> tuple[Dataset[dict[str, Any]], Dataset[dict[str, Any]] | None]:
    """Open every video's header before training; stop on unreadable ones, or skip and count them."""
    out: list[Dataset[dict[str, Any]] | None] = []
    for name, ds in (("train", train_set), ("val", val_set)):
        if ds is None:
            out.append(None)
            continue
        bad = unreadable(ds, f"opening {name} videos", progress)
        if bad and not skip_unreadable:
            shown = "; ".join(msg for _, msg in bad[:SHOW])
            more = f" (+{len(bad) - SHOW} more)" if len(bad) > SHOW else ""
            raise VideoListError(
                f"{len(bad)} of {len(ds)} {name} videos cannot be read: {shown}{more}. Fix or "
                "remove them, or set data.skip_unreadable=true to train without them"
            )
        if bad:
            _drop(ds, {i for i, _ in bad})
            print(
                f"data.skip_unreadable: skipped {len(bad)} unreadable {name} video(s), "
                f"{len(ds)} left (first: {bad[0][1]})",
                flush=True,
            )
            if len(ds) == 0:
                raise VideoListError(f"no readable {name} video left")
        out.append(SkipUnreadable(ds) if skip_unreadable else ds)
    return out[0], out[1]  # type: ignore[return-value]


def check_recognition(cfg: RecognitionConfig, progress: bool = True) -> CheckReport:
    """Scan labels, lists and every listed video; see the module docstring."""
    from sidetune.recognition.recipe import _list_path

    d = cfg.data
    report = CheckReport(f"recognition data of run_dir={cfg.run_dir} (data.dataset={d.dataset})")
    labels = _list_path(cfg, d.labels)
    if labels is not None:
        try:
            names = load_label_names(labels)
            report.count(f"classes ({labels})", len(names))
            if len(names) != cfg.model.num_classes:
                report.add(
                    "config",
                    f"model.num_classes={cfg.model.num_classes} but {labels} lists {len(names)} classes",
                )
        except VideoListError as exc:
            report.add("labels file", str(exc))
    if d.train is None:
        report.add("config", "data.train: a training video list is required")
    for split in ("train", "val", "test"):
        path = _list_path(cfg, getattr(d, split))
        if path is None:
            continue
        try:
            records = parse_video_list(path, d.root or None, d.format, cfg.model.num_classes)
        except VideoListError as exc:
            report.add("video list", str(exc))
            continue
        report.count(f"{split} videos ({path})", len(records))
        for rec in _progress(records, f"decoding {split} videos", progress):
            try:
                _decode_test_frames(rec, cfg)
            except VideoListError as exc:
                report.add(f"unreadable {split} video", str(exc))
    return report


def _decode_test_frames(record: VideoRecord, cfg: RecognitionConfig) -> None:
    """Read the frames a single-clip test pass samples (decoded at the training size)."""
    from sidetune.recognition.data import read_frame_folder, read_video_frames

    d = cfg.data
    n = _frames_of(record, d.frame_template, d.frame_index_base)
    idx = local_windows(
        eval_segment_indices(n, d.num_segments, 1), cfg.model.num_local_frames, n
    ).reshape(-1)
    wanted: Any = sorted(set(int(i) for i in idx))
    if record.num_frames is not None:
        read_frame_folder(record, wanted, d.frame_template, d.frame_index_base)
    else:
        read_video_frames(record, wanted, d.input_size * 256 // 224)
