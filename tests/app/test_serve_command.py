"""``sidetune serve``: argument checks, the bind-address warning, a real start and Ctrl+C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sidetune.cli import main
from tests.app.conftest import write_mp4


def _files(folder: Path) -> tuple[Path, Path]:
    gt = folder / "gt.jsonl"
    gt.write_text(json.dumps({"qid": 1, "query": "q", "vid": "v", "duration": 30,
                              "relevant_windows": [[0, 4]]}) + "\n")  # fmt: skip
    pred = folder / "pred.jsonl"
    pred.write_text(json.dumps({"qid": 1, "pred_relevant_windows": [[0, 4, 0.5]]}) + "\n")
    return gt, pred


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "nothing to serve"),
        (["--pred", "p.jsonl"], "--pred and --gt go together"),
        (["--pred", "nope.jsonl", "--gt", "nope.jsonl"], "--pred nope.jsonl: no such file"),
        (["--run", "no_such_dir"], "--run no_such_dir: not a directory"),
        (["--run", "."], "no config.yaml"),
        (["--videos", "no_such_dir"], "--videos no_such_dir: not a directory"),
        (["--max-upload", "lots"], "--max-upload: cannot read size 'lots'"),
    ],
)
def test_bad_arguments(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert main(["serve", *argv]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("host", "warned"), [("127.0.0.1", False), ("0.0.0.0", True)])
def test_host_warning(
    host: str, warned: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import uvicorn

    gt, pred = _files(tmp_path)
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    argv = ["serve", "--pred", str(pred), "--gt", str(gt), "--dataset", "charades"]
    assert main([*argv, "--host", host, "--port", "9999"]) == 0
    captured = capsys.readouterr()
    assert seen["host"] == host and seen["port"] == 9999
    assert ("warning: binding to 0.0.0.0" in captured.err) is warned
    assert "http://" in captured.out


def test_default_binds_localhost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    gt, pred = _files(tmp_path)
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    assert main(["serve", "--pred", str(pred), "--gt", str(gt), "--dataset", "charades"]) == 0
    assert seen["host"] == "127.0.0.1"


def test_real_start_and_interrupt_cleans_uploads(tmp_path: Path) -> None:
    gt, pred = _files(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    argv = [sys.executable, "-m", "sidetune.cli", "serve", "--pred", str(pred), "--gt", str(gt),
            "--dataset", "charades", "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        info = None
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=2) as r:
                    info = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.1)
        assert info is not None and info["browser"] is True and info["live"] is False
        video = tmp_path / "v.mp4"
        write_mp4(video, seconds=1.0)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/upload?name=v.mp4", data=video.read_bytes()
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            assert json.loads(r.read())["name"] == "v.mp4"
        uploads = [p for p in tmp.iterdir() if p.name.startswith("sidetune-serve-")]
        assert len(uploads) == 1 and len(list(uploads[0].iterdir())) == 1
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    # the upload folder went with the server
    assert not [p for p in tmp.iterdir() if p.name.startswith("sidetune-serve-")]


def test_run_that_cannot_ground_still_serves_its_predictions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    import uvicorn

    from sidetune.commands.serve import add_arguments, build_config

    gt, pred = _files(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"task: grounding\ndata:\n  val: {gt}\n")
    (tmp_path / "preds_val.jsonl").write_text(pred.read_text())
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = build_config(parser.parse_args(["--run", str(run)]))
    assert config.grounder_factory is None
    assert config.pred == (tmp_path / "preds_val.jsonl").resolve()
    assert config.live_error is not None and config.live_error.startswith("live grounding is off: ")
    assert "warning: live grounding is off" in capsys.readouterr().err
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    (tmp_path / "preds_val.jsonl").unlink()
    assert main(["serve", "--run", str(run)]) == 1
    assert "and no predictions to browse" in capsys.readouterr().err
