"""Annotation readers: every shipped file loads strictly; bad rows name file:line and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sidetune.errors import SidetuneError
from sidetune.grounding.annotations import (
    CLIP_LENGTH,
    DURATION_TOLERANCE_S,
    AnnotationError,
    GroundingRecord,
    load_annotations,
)
from tests.shared_data import shared_path

REAL_FILES = [
    ("qvhighlights", "highlight_train_release.jsonl", "qvhighlights", 7218),
    ("qvhighlights", "highlight_val_release.jsonl", "qvhighlights", 1550),
    ("qvhighlights", "highlight_test_with_gt.jsonl", "qvhighlights", 1542),
    ("charades_sta", "charades_train_release.jsonl", "charades", 12404),
    ("charades_sta", "charades_test_release.jsonl", "charades", 3720),
    ("tacos", "tacos_train_release.jsonl", "tacos", 9790),
    ("tacos", "tacos_val_release.jsonl", "tacos", 4436),
    ("tacos", "tacos_test_release.jsonl", "tacos", 4001),
]

QVH_ROW: dict[str, Any] = {
    "qid": 7,
    "query": "a man talks",
    "duration": 150,
    "vid": "abc_60.0_210.0",
    "relevant_clip_ids": [3, 4, 5],
    "saliency_scores": [[1, 2, 3], [4, 4, 4], [0, 0, 1]],
    "relevant_windows": [[6, 12]],
}


def write_rows(tmp_path: Path, rows: list[Any], name: str = "ann.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(("folder", "name", "dataset", "count"), REAL_FILES)
def test_real_files_load_strict(folder: str, name: str, dataset: str, count: int) -> None:
    ann = load_annotations(shared_path("data", folder, name), dataset, strict=True)
    assert len(ann) == count and ann.skipped == []
    first = ann[0]
    assert isinstance(first, GroundingRecord) and first.windows
    assert isinstance(first.qid, str if dataset == "tacos" else int)
    assert all(isinstance(x, float) for w in first.windows for x in w)
    if dataset == "qvhighlights":
        assert first.relevant_clip_ids and first.saliency_scores
        assert len(first.relevant_clip_ids) == len(first.saliency_scores)
        assert all(len(s) == 3 for s in first.saliency_scores)
    else:
        assert first.relevant_clip_ids is None and first.saliency_scores is None


def test_qvhighlights_record_fields(tmp_path: Path) -> None:
    ann = load_annotations(write_rows(tmp_path, [QVH_ROW, "\n"]), "qvhighlights")
    (r,) = ann.records
    assert r == GroundingRecord(
        qid=7,
        vid="abc_60.0_210.0",
        query="a man talks",
        duration=150.0,
        windows=((6.0, 12.0),),
        relevant_clip_ids=(3, 4, 5),
        saliency_scores=((1, 2, 3), (4, 4, 4), (0, 0, 1)),
    )
    assert ann.by_qid()[7] is r and list(ann) == [r] and ann.dataset == "qvhighlights"
    assert CLIP_LENGTH == {"qvhighlights": 2.0, "charades": 1.0, "tacos": 2.0}


def test_test_split_without_gt(tmp_path: Path) -> None:
    row = {k: QVH_ROW[k] for k in ("qid", "query", "duration", "vid")}
    (r,) = load_annotations(write_rows(tmp_path, [row]), "qvhighlights").records
    assert r.windows == () and r.relevant_clip_ids is None and not r.has_gt


def test_window_may_end_at_duration_and_within_tolerance(tmp_path: Path) -> None:
    rows = [
        {"qid": 1, "query": "q", "vid": "v", "duration": 30.0, "relevant_windows": [[20.0, 30.0]]},
        {
            "qid": 2,
            "query": "q",
            "vid": "v",
            "duration": 30.0,
            "relevant_windows": [[20.0, 30.0 + DURATION_TOLERANCE_S]],
        },
    ]
    assert len(load_annotations(write_rows(tmp_path, rows), "charades")) == 2


def _bad(row_update: dict[str, Any], drop: str | None = None) -> dict[str, Any]:
    row = {**QVH_ROW, **row_update}
    if drop:
        del row[drop]
    return row


@pytest.mark.parametrize(
    ("row", "pattern"),
    [
        ('{"qid": 8, "query": "trunc', r":2: field '<json>': invalid JSON .*truncated line"),
        (_bad({}, drop="duration"), r":2: field 'duration': missing key"),
        (_bad({}, drop="vid"), r":2: field 'vid': missing key"),
        (
            _bad({"relevant_windows": [[6, 12], [20, 20]]}),
            r"'relevant_windows\[1\]': end 20 <= start 20",
        ),
        (_bad({"relevant_windows": [[14, 10]]}), r"'relevant_windows\[0\]': end 10 <= start 14"),
        (
            _bad({"relevant_windows": [[140, 152]]}),
            r"'relevant_windows\[0\]'.*outside the video \[0, 150\]",
        ),
        (_bad({"relevant_windows": [[-2, 4]]}), r"'relevant_windows\[0\]'.*outside"),
        (
            _bad({"relevant_windows": [[1, "x"]]}),
            r"'relevant_windows\[0\]': expected \[start, end\]",
        ),
        (_bad({"relevant_windows": []}), r"'relevant_windows': expected a non-empty list"),
        (
            _bad({"saliency_scores": [[1, 2, 3]]}),
            r"'saliency_scores': 1 entries but relevant_clip_ids has 3",
        ),
        (
            _bad({"saliency_scores": [[1, 2], [4, 4, 4], [0, 0, 1]]}),
            r"'saliency_scores\[0\]': expected 3 int scores",
        ),
        (_bad({"saliency_scores": [[1, 2, 5], [4, 4, 4], [0, 0, 1]]}), r"'saliency_scores\[0\]'"),
        (
            _bad({"relevant_clip_ids": [3, 4, 75]}),
            r"'relevant_clip_ids': clip id 75 outside the 75 clips",
        ),
        (_bad({"relevant_clip_ids": [3, 3, 4]}), r"'relevant_clip_ids': duplicate"),
        (_bad({}, drop="saliency_scores"), r"'saliency_scores': missing key"),
        (_bad({"qid": 1.5}), r"'qid': expected an int or a string"),
        (_bad({"duration": 0}), r"'duration': expected a positive number"),
        (_bad({"qid": 1}), r":2: field 'qid': duplicate qid 1 \(first on line 1\)"),
        ("[1, 2]\n", r"field '<row>': expected a JSON object"),
    ],
)
def test_bad_rows_name_file_line_field(tmp_path: Path, row: Any, pattern: str) -> None:
    good = {**QVH_ROW, "qid": 1}
    path = write_rows(tmp_path, [good, row])
    with pytest.raises(AnnotationError, match=pattern) as err:
        load_annotations(path, "qvhighlights")
    assert str(err.value).startswith(f"{path}:")
    assert isinstance(err.value, SidetuneError) and isinstance(err.value, ValueError)
    assert "\n" not in str(err.value)


def test_non_strict_skips_and_counts(tmp_path: Path) -> None:
    rows = [
        {**QVH_ROW, "qid": 1},
        '{"qid": 2, "query": "tr\n',
        _bad({"qid": 3, "relevant_windows": [[10, 8]]}),
        {**QVH_ROW, "qid": 4},
        _bad({"qid": 5}, drop="query"),
    ]
    ann = load_annotations(write_rows(tmp_path, rows), "qvhighlights", strict=False)
    assert [r.qid for r in ann] == [1, 4]
    assert len(ann.skipped) == 3
    assert ann.skipped[0].startswith(f"{tmp_path / 'ann.jsonl'}:2:")
    assert ":3: field 'relevant_windows[0]'" in ann.skipped[1]
    assert ":5: field 'query': missing key" in ann.skipped[2]


def test_charades_and_tacos_rows(tmp_path: Path) -> None:
    tacos = {
        "qid": "s1-d2_0",
        "query": "cut",
        "vid": "s1-d2",
        "duration": 100.5,
        "relevant_windows": [[1.5, 7.25]],
    }
    (r,) = load_annotations(write_rows(tmp_path, [tacos]), "tacos").records
    assert r.qid == "s1-d2_0" and r.windows == ((1.5, 7.25),) and r.saliency_scores is None
    # charades ignores clip fields; qvhighlights requires them
    charades = {**tacos, "qid": 3}
    assert load_annotations(write_rows(tmp_path, [charades]), "charades")[0].qid == 3
    with pytest.raises(AnnotationError, match="'relevant_clip_ids': missing key"):
        load_annotations(write_rows(tmp_path, [charades]), "qvhighlights")


def test_unknown_dataset_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="unknown dataset 'kinetics'"):
        load_annotations(tmp_path / "x.jsonl", "kinetics")
    with pytest.raises(AnnotationError, match="cannot read"):
        load_annotations(tmp_path / "missing.jsonl", "charades")
    with pytest.raises(AnnotationError, match="no annotation rows"):
        load_annotations(write_rows(tmp_path, ["\n"]), "charades")
