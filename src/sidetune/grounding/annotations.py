"""Readers for the temporal-grounding annotation jsonl files (QVHighlights, Charades-STA, TACoS).

One reader, one record type, a dataset switch. Every row is checked; a bad row raises
:class:`AnnotationError` naming ``file:line`` and the field (``strict=True``), or is skipped and
its message kept in :attr:`AnnotationFile.skipped` (``strict=False``).

Row layouts (public releases)::

    qvhighlights  {qid: int, query, vid, duration, relevant_windows: [[s, e], ...],
                   relevant_clip_ids: [int, ...], saliency_scores: [[a1, a2, a3], ...]}
    charades      {qid: int, query, vid, duration, relevant_windows: [[s, e]]}
    tacos         {qid: str, query, vid, duration, relevant_windows: [[s, e]]}

Test files without ground truth omit ``relevant_windows`` (and the QVHighlights clip fields);
their records have ``windows == ()`` and ``relevant_clip_ids is saliency_scores is None``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidetune.errors import SidetuneError

DATASETS: tuple[str, ...] = ("qvhighlights", "charades", "tacos")
CLIP_LENGTH: dict[str, float] = {"qvhighlights": 2.0, "charades": 1.0, "tacos": 2.0}
NUM_ANNOTATORS: int = 3  # QVHighlights saliency: 3 workers per clip
SALIENCY_RANGE: tuple[int, int] = (0, 4)  # Very Bad .. Very Good
# A window may overshoot [0, duration] by this much (seconds). Every row of the shipped
# QVHighlights / Charades-STA / TACoS files lies inside [0, duration] exactly (many end *at*
# the duration); other Charades-STA releases end up to a fraction of a second past the video,
# which a 1 s slack (one Charades clip) still accepts.
DURATION_TOLERANCE_S: float = 1.0


class AnnotationError(SidetuneError, ValueError):
    """A malformed annotation row; the message names ``file:line`` and the field."""


@dataclass(frozen=True)
class GroundingRecord:
    """One query of a grounding annotation file.

    windows: relevant windows in seconds ``((start, end), ...)``; empty for files without GT.
    relevant_clip_ids / saliency_scores: QVHighlights only; ``saliency_scores[i]`` holds the
    annotators' scores (0..4) of clip ``relevant_clip_ids[i]`` (clip i covers
    ``[i * 2, (i + 1) * 2)`` seconds).
    """

    qid: int | str
    vid: str
    query: str
    duration: float
    windows: tuple[tuple[float, float], ...]
    relevant_clip_ids: tuple[int, ...] | None = None
    saliency_scores: tuple[tuple[int, ...], ...] | None = None

    @property
    def has_gt(self) -> bool:
        return len(self.windows) > 0


@dataclass
class AnnotationFile:
    """Records of one file; ``skipped`` holds the messages of rows dropped with ``strict=False``."""

    path: Path
    dataset: str
    records: list[GroundingRecord]
    skipped: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[GroundingRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> GroundingRecord:
        return self.records[index]

    def by_qid(self) -> dict[int | str, GroundingRecord]:
        return {r.qid: r for r in self.records}


class _FieldError(Exception):
    """Raised inside row parsing; the reader adds ``file:line``."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"field '{field_name}': {message}")


def check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise AnnotationError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    return dataset


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _require(row: dict[str, Any], key: str) -> Any:
    if key not in row:
        raise _FieldError(key, "missing key")
    return row[key]


def _parse_qid(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _FieldError("qid", f"expected an int or a string, got {type(value).__name__}")
    return value


def _parse_str(row: dict[str, Any], key: str) -> str:
    value = _require(row, key)
    if not isinstance(value, str):
        raise _FieldError(key, f"expected a string, got {type(value).__name__}")
    return value


def _parse_windows(value: Any, duration: float) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list) or not value:
        raise _FieldError("relevant_windows", "expected a non-empty list of [start, end]")
    windows = []
    for i, w in enumerate(value):
        name = f"relevant_windows[{i}]"
        if not isinstance(w, list) or len(w) != 2 or not all(_is_number(x) for x in w):
            raise _FieldError(name, f"expected [start, end] with finite numbers, got {w!r}")
        start, end = float(w[0]), float(w[1])
        if end <= start:
            raise _FieldError(name, f"end {end:g} <= start {start:g}")
        if start < -DURATION_TOLERANCE_S or end > duration + DURATION_TOLERANCE_S:
            raise _FieldError(
                name,
                f"[{start:g}, {end:g}] lies outside the video [0, {duration:g}] "
                f"by more than {DURATION_TOLERANCE_S:g} s",
            )
        windows.append((start, end))
    return tuple(windows)


def _parse_clips(
    row: dict[str, Any], duration: float, clip_length: float
) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    clip_ids = _require(row, "relevant_clip_ids")
    scores = _require(row, "saliency_scores")
    if not isinstance(clip_ids, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in clip_ids
    ):
        raise _FieldError("relevant_clip_ids", "expected a list of ints")
    if not isinstance(scores, list):
        raise _FieldError("saliency_scores", "expected a list of per-clip score lists")
    if len(clip_ids) != len(scores):
        raise _FieldError(
            "saliency_scores",
            f"{len(scores)} entries but relevant_clip_ids has {len(clip_ids)}",
        )
    if len(set(clip_ids)) != len(clip_ids):
        raise _FieldError("relevant_clip_ids", "duplicate clip ids")
    num_clips = math.ceil(duration / clip_length - 1e-9)
    bad = [c for c in clip_ids if not 0 <= c < num_clips]
    if bad:
        raise _FieldError(
            "relevant_clip_ids",
            f"clip id {bad[0]} outside the {num_clips} clips of a {duration:g} s video",
        )
    lo, hi = SALIENCY_RANGE
    parsed = []
    for i, s in enumerate(scores):
        if (
            not isinstance(s, list)
            or len(s) != NUM_ANNOTATORS
            or not all(isinstance(x, int) and not isinstance(x, bool) and lo <= x <= hi for x in s)
        ):
            raise _FieldError(
                f"saliency_scores[{i}]",
                f"expected {NUM_ANNOTATORS} int scores in [{lo}, {hi}], got {s!r}",
            )
        parsed.append(tuple(s))
    return tuple(clip_ids), tuple(parsed)


def parse_record(row: Any, dataset: str) -> GroundingRecord:
    """Validate one decoded json row; raises ``_FieldError`` (the reader adds file:line)."""
    if not isinstance(row, dict):
        raise _FieldError("<row>", f"expected a JSON object, got {type(row).__name__}")
    qid = _parse_qid(_require(row, "qid"))
    query = _parse_str(row, "query")
    vid = _parse_str(row, "vid")
    duration = _require(row, "duration")
    if not _is_number(duration) or duration <= 0:
        raise _FieldError("duration", f"expected a positive number, got {duration!r}")
    duration = float(duration)
    has_gt = "relevant_windows" in row
    windows = _parse_windows(row["relevant_windows"], duration) if has_gt else ()
    clip_ids = saliency = None
    if dataset == "qvhighlights" and (has_gt or "relevant_clip_ids" in row):
        if "relevant_clip_ids" not in row and "saliency_scores" not in row:
            # Charades-STA / TACoS rows: windows but no saliency. Say which switch reads them.
            raise _FieldError(
                "relevant_clip_ids",
                "missing key (QVHighlights rows carry saliency; a Charades-STA or TACoS file has "
                "none: pass --dataset charades / --dataset tacos, or set data.dataset)",
            )
        clip_ids, saliency = _parse_clips(row, duration, CLIP_LENGTH[dataset])
    return GroundingRecord(qid, vid, query, duration, windows, clip_ids, saliency)


def load_annotations(
    path: str | os.PathLike[str], dataset: str = "qvhighlights", strict: bool = True
) -> AnnotationFile:
    """Read and validate a grounding annotation jsonl.

    strict=True: the first bad row raises :class:`AnnotationError` (``file:line: field '...'``).
    strict=False: bad rows are skipped; their messages are in ``.skipped``.
    Blank lines are ignored. Duplicate qids are an error.
    """
    check_dataset(dataset)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a leading byte-order mark is not data
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read annotation file ({exc})") from exc
    records: list[GroundingRecord] = []
    skipped: list[str] = []
    first_line: dict[int | str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _FieldError(
                    "<json>", f"invalid JSON ({exc.msg} at column {exc.colno}; truncated line?)"
                ) from None
            record = parse_record(row, dataset)
            if record.qid in first_line:
                raise _FieldError(
                    "qid", f"duplicate qid {record.qid!r} (first on line {first_line[record.qid]})"
                )
        except _FieldError as exc:
            message = f"{path}:{lineno}: {exc}"
            if strict:
                raise AnnotationError(message) from None
            skipped.append(message)
            continue
        first_line[record.qid] = lineno
        records.append(record)
    if not records and not skipped:
        raise AnnotationError(f"{path}: no annotation rows")
    return AnnotationFile(path=path, dataset=dataset, records=records, skipped=skipped)
