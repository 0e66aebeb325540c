from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from sidetune.utils.io import atomic_open, write_json, write_jsonl


def test_atomic_open_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    with atomic_open(target) as fh:
        fh.write("first")
    assert target.read_text() == "first"

    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("partial")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]  # no temp file left behind


def test_atomic_files_get_umask_permissions(tmp_path: Path) -> None:
    target = tmp_path / "perm.txt"
    old = os.umask(0o022)
    try:
        with atomic_open(target) as fh:
            fh.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_write_json_and_jsonl(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    write_jsonl(tmp_path / "b.jsonl", [{"q": 1}, {"q": 2}])
    lines = (tmp_path / "b.jsonl").read_text().splitlines()
    assert [json.loads(x)["q"] for x in lines] == [1, 2]
