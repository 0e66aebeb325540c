"""The official QVHighlights predictions jsonl: read, validate, write.

One row per query::

    {"qid": 2579, "vid": "...", "query": "...",
     "pred_relevant_windows": [[start_s, end_s, score], ...],   # best first; metrics use <= 10
     "pred_saliency_scores": [float, ...]}                       # one per clip; optional

Required keys: ``qid`` and ``pred_relevant_windows``; ``vid`` / ``query`` are carried along,
``pred_saliency_scores`` is needed only for highlight detection. A window may have zero length
(``end == start``, it never matches) but not ``end < start``; every number must be finite. An
empty window list is allowed (the query scores 0 for moment retrieval).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sidetune.errors import SidetuneError
from sidetune.utils.io import write_jsonl

REQUIRED_KEYS: tuple[str, ...] = ("qid", "pred_relevant_windows")
_SHOW = 5  # qids listed in a mismatch message


class PredictionError(SidetuneError, ValueError):
    """A malformed prediction row; the message names ``file:line`` (or row) and the field."""


class QidMismatchError(PredictionError):
    """Predictions and ground truth cover different qids."""


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _row_error(row: Any, key: str | None = None) -> str | None:
    """First problem of one row as ``field 'name': message``, or None. Pure-Python slow path."""
    if not isinstance(row, Mapping):
        return f"field '<row>': expected a JSON object, got {type(row).__name__}"
    for k in REQUIRED_KEYS:
        if k not in row:
            return f"field '{k}': missing key"
    qid = row["qid"]
    if isinstance(qid, bool) or not isinstance(qid, (int, str)):
        return f"field 'qid': expected an int or a string, got {type(qid).__name__}"
    windows = row["pred_relevant_windows"]
    if not isinstance(windows, list):
        return "field 'pred_relevant_windows': expected a list of [start, end, score]"
    for i, w in enumerate(windows):
        name = f"pred_relevant_windows[{i}]"
        if not isinstance(w, list) or len(w) != 3 or not all(_is_number(x) for x in w):
            return f"field '{name}': expected [start, end, score] with finite numbers, got {w!r}"
        if w[1] < w[0]:
            return f"field '{name}': end {w[1]:g} < start {w[0]:g}"
    if "pred_saliency_scores" in row:
        sal = row["pred_saliency_scores"]
        if not isinstance(sal, list):
            return "field 'pred_saliency_scores': expected a list of numbers"
        for i, x in enumerate(sal):
            if not _is_number(x):
                return f"field 'pred_saliency_scores[{i}]': expected a finite number, got {x!r}"
    return None


def _numeric(values: list[Any], width: int | None) -> bool:
    """Vectorized check that ``values`` is a list of finite numbers (or of ``width``-lists)."""
    if not values:
        return True
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError):  # ragged
        return False
    if arr.dtype.kind not in "if":  # strings, bools, None -> slow path names the culprit
        return False
    if width is not None and (arr.ndim != 2 or arr.shape[1] != width):
        return False
    if width is None and arr.ndim != 1:
        return False
    return bool(np.isfinite(arr).all()) and (width is None or bool((arr[:, 1] >= arr[:, 0]).all()))


def validate_predictions(
    rows: Sequence[Any], source: str = "predictions", line_numbers: Sequence[int] | None = None
) -> None:
    """Raise :class:`PredictionError` for the first malformed row (``source:line: field ...``).

    Checks run vectorized over all rows at once; only a failing batch falls back to the
    per-row Python check that names the exact row and field. Duplicate qids are an error.
    """

    def where(i: int) -> str:
        return f"{source}:{line_numbers[i]}" if line_numbers is not None else f"{source}[row {i}]"

    def fail_first() -> None:
        for i, row in enumerate(rows):
            msg = _row_error(row)
            if msg is not None:
                raise PredictionError(f"{where(i)}: {msg}")

    structured = all(
        isinstance(r, Mapping)
        and all(k in r for k in REQUIRED_KEYS)
        and isinstance(r["qid"], (int, str))
        and not isinstance(r["qid"], bool)
        and isinstance(r["pred_relevant_windows"], list)
        and isinstance(r.get("pred_saliency_scores", []), list)
        for r in rows
    )
    if not structured:
        fail_first()
    windows = [w for r in rows for w in r["pred_relevant_windows"]]
    saliency = [x for r in rows for x in r.get("pred_saliency_scores", ())]
    if not (_numeric(windows, 3) and _numeric(saliency, None)):
        fail_first()
        raise PredictionError(f"{source}: malformed predictions")  # not reached: fail_first raises
    # NumPy reads [1, true] as [1.0, 1.0]: JSON booleans must be caught by type.
    if bool in set(map(type, saliency)) or any(bool in set(map(type, w)) for w in windows):
        fail_first()
    seen: dict[Any, int] = {}
    for i, r in enumerate(rows):
        if r["qid"] in seen:
            raise PredictionError(
                f"{where(i)}: field 'qid': duplicate qid {r['qid']!r} (first at {where(seen[r['qid']])})"
            )
        seen[r["qid"]] = i


# Files above this size show a progress bar while being parsed (the parse is the slow part).
PROGRESS_BYTES = 16 * 1024 * 1024


def read_predictions(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read and validate a predictions jsonl; errors name ``file:line`` and the field."""
    return read_prediction_lines(path)[0]


def read_prediction_lines(
    path: str | os.PathLike[str], progress: bool = True
) -> tuple[list[dict[str, Any]], list[int]]:
    """:func:`read_predictions` plus each row's line number (for later messages).

    A UTF-8 byte-order mark is accepted. Files over 16 MB show a progress bar on stderr.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PredictionError(f"{path}: cannot read predictions file ({exc})") from exc
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    all_lines = text.splitlines()
    numbered: Iterable[tuple[int, str]] = enumerate(all_lines, start=1)
    if progress and len(text) > PROGRESS_BYTES:
        from tqdm import tqdm

        numbered = tqdm(
            numbered,
            total=len(all_lines),
            desc=f"reading {path.name} ({len(text) / 2**20:.0f} MB)",
            unit=" rows",
            leave=False,
        )
    for lineno, line in numbered:
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise PredictionError(
                f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno}; truncated line?)"
            ) from None
        lines.append(lineno)
    if not rows:
        raise PredictionError(f"{path}: no prediction rows")
    validate_predictions(rows, source=str(path), line_numbers=lines)
    return rows, lines


def check_saliency_lengths(
    rows: Sequence[Mapping[str, Any]],
    num_clips: Mapping[Any, int],
    source: str = "predictions",
    line_numbers: Sequence[int] | None = None,
) -> None:
    """Each ``pred_saliency_scores`` must have one score per clip of its video.

    ``num_clips[qid]`` is the GT video's clip count (``ceil(duration / clip_length)``). One
    clip more or fewer is accepted: public feature files are sometimes one clip short or long,
    and predictions follow the features.
    """
    for i, row in enumerate(rows):
        sal = row.get("pred_saliency_scores")
        n = num_clips.get(row["qid"])
        if sal is None or n is None or abs(len(sal) - n) <= 1:
            continue
        where = f"{source}:{line_numbers[i]}" if line_numbers is not None else f"{source}[row {i}]"
        raise PredictionError(
            f"{where}: field 'pred_saliency_scores': {len(sal)} scores but qid {row['qid']!r} "
            f"has {n} clips in the ground truth (one score per clip)"
        )


def write_predictions(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> Path:
    """Validate then write rows atomically as jsonl; returns the path."""
    rows = list(rows)
    validate_predictions(rows, source=str(path))
    write_jsonl(path, rows)
    return Path(path)


def match_qids(
    pred_qids: Iterable[Any],
    gt_qids: Iterable[Any],
    pred_name: str = "predictions",
    gt_name: str = "ground truth",
) -> None:
    """Raise :class:`QidMismatchError` unless both sides hold the same qids.

    The message gives the counts and the first few missing / extra qids (in file order).
    """
    pred_list, gt_list = list(pred_qids), list(gt_qids)
    pred_set, gt_set = set(pred_list), set(gt_list)
    if pred_set == gt_set:
        return
    missing = [q for q in gt_list if q not in pred_set]
    extra = [q for q in pred_list if q not in gt_set]
    parts = []
    if missing:
        shown = ", ".join(repr(q) for q in missing[:_SHOW])
        more = ", ..." if len(missing) > _SHOW else ""
        parts.append(f"{len(missing)} qid(s) of {gt_name} missing from {pred_name} ({shown}{more})")
    if extra:
        shown = ", ".join(repr(q) for q in extra[:_SHOW])
        more = ", ..." if len(extra) > _SHOW else ""
        parts.append(f"{len(extra)} extra qid(s) in {pred_name} not in {gt_name} ({shown}{more})")
    hint = ""
    if {str(q) for q in pred_set} == {str(q) for q in gt_set}:
        hint = "; the qids agree as strings: one side stores them as int, the other as str"
    raise QidMismatchError("qid mismatch: " + "; ".join(parts) + hint)
