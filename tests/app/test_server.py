"""The HTTP routes of ``sidetune serve`` through Starlette's test client."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from sidetune.app.files import (
    UploadError,
    UploadStore,
    parse_size,
    resolve_allowed,
    sniff_container,
)
from sidetune.app.server import AppConfig, create_app
from sidetune.errors import SidetuneError
from tests.app.conftest import FakeGrounder


def _gt_pred(folder: Path, windows: list[list[float]]) -> tuple[Path, Path]:
    gt = folder / "gt.jsonl"
    gt.write_text(json.dumps({"qid": 7, "query": "a dog", "vid": "v1", "duration": 30,
                              "relevant_windows": [[4, 8]]}) + "\n")  # fmt: skip
    pred = folder / "pred.jsonl"
    pred.write_text(json.dumps({"qid": 7, "pred_relevant_windows": windows}) + "\n")
    return gt, pred


def _wait_job(client: TestClient, job: str) -> dict[str, Any]:
    for _ in range(200):
        s = client.get(f"/api/jobs/{job}").json()
        if s["state"] in ("done", "error"):
            return s
        time.sleep(0.02)
    raise AssertionError(f"job {job} did not finish")


@pytest.fixture
def live_client(tiny_video: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    fake = FakeGrounder()
    gt, pred = _gt_pred(tmp_path, [[4, 8, 0.9]])
    config = AppConfig(
        grounder_factory=lambda: fake,
        videos=[tiny_video.parent],
        pred=pred,
        gt=gt,
        dataset="charades",
        max_upload=200_000,
    )
    app = create_app(config)
    with TestClient(app) as client:
        yield client, fake, app
    upload_dir = app.state.sidetune.uploads.dir
    assert upload_dir is None or not upload_dir.exists()  # temp dir removed at shutdown


def test_info_and_page(live_client: Any, tiny_video: Path) -> None:
    client, _, _ = live_client
    info = client.get("/api/info").json()
    assert info["live"] and info["browser"]
    assert info["videos"] == [{"path": str(tiny_video.resolve()), "label": "tiny.mp4"}]
    page = client.get("/")
    assert page.status_code == 200 and 'id="view-browse"' in page.text
    assert "http://" not in page.text.replace('"http://www.w3.org', "")  # nothing from a CDN
    assert client.get("/static/app.js").status_code == 200


def test_browser_routes(live_client: Any) -> None:
    client, _, _ = live_client
    summary = client.get("/api/browser/summary").json()
    assert summary["metrics"]["brief"]["R1@0.7"] == 100.0 and summary["num_queries"] == 1
    rows = client.get("/api/browser/queries").json()["rows"]
    assert rows[0]["qid"] == 7 and rows[0]["kind@0.5"] == "hit"
    assert client.get("/api/browser/query/7").json()["gt_windows"] == [[4.0, 8.0]]
    assert client.get("/api/browser/query/8").status_code == 404
    assert client.get("/api/browser/query/7").json()["video"] is None  # no v1.mp4 under --videos


def test_bad_predictions_show_evaluate_message(tmp_path: Path) -> None:
    gt, pred = _gt_pred(tmp_path, [[4, 8, 0.9]])
    pred.write_text('{"qid": 7, "pred_relevant_windows": [[4, 8, "x"]]}\n')
    with TestClient(create_app(AppConfig(pred=pred, gt=gt, dataset="charades"))) as client:
        resp = client.get("/api/browser/summary")
    assert resp.status_code == 422
    assert resp.json()["error"].startswith(f"{pred}:1: field 'pred_relevant_windows[0]'")


def test_open_other_file_only_under_allowed_dirs(live_client: Any, tmp_path: Path) -> None:
    client, _, _ = live_client
    gt, pred = tmp_path / "gt.jsonl", tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"qid": 7, "pred_relevant_windows": [[20, 24, 0.9]]}) + "\n")
    ok = client.post(
        "/api/browser/open", json={"pred": str(pred), "gt": str(gt), "dataset": "charades"}
    )
    assert ok.status_code == 200 and ok.json()["metrics"]["brief"]["R1@0.3"] == 0.0
    for bad in ("/etc/passwd", f"{tmp_path}/../../etc/passwd", f"{tmp_path}/../x.jsonl"):
        resp = client.post("/api/browser/open", json={"pred": bad, "gt": str(gt)})
        assert resp.status_code == 403 and "outside the directories" in resp.json()["error"]


def test_media_traversal_and_range(live_client: Any, tiny_video: Path) -> None:
    client, _, _ = live_client
    full = client.get("/media", params={"path": str(tiny_video)})
    assert full.status_code == 200 and full.content == tiny_video.read_bytes()
    part = client.get("/media", params={"path": str(tiny_video)}, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == tiny_video.read_bytes()[:100]
    for bad in ("/etc/passwd", f"{tiny_video.parent}/../../../etc/passwd", "../../etc/passwd"):
        assert client.get("/media", params={"path": bad}).status_code == 403
    assert client.get("/media/..%2F..%2Fetc%2Fpasswd").status_code == 404  # no such route


def test_symlink_out_of_allowed_dir_is_forbidden(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    root.mkdir()
    (root / "link.mp4").symlink_to("/etc/passwd")
    with pytest.raises(SidetuneError, match="outside"):
        resolve_allowed(root / "link.mp4", [root.resolve()])
    assert (
        resolve_allowed(root / "x" / ".." / "a.mp4", [root.resolve()]) == root.resolve() / "a.mp4"
    )


def test_ground_path_and_cache_reuse(live_client: Any, tiny_video: Path) -> None:
    client, fake, _ = live_client
    first = client.post("/api/ground", json={"path": str(tiny_video), "query": "the square moves"})
    s1 = _wait_job(client, first.json()["job"])
    assert s1["state"] == "done" and s1["result"]["moments"][0] == [1.0, 2.0, 0.9]
    second = client.post("/api/ground", json={"path": str(tiny_video), "query": "  another  "})
    s2 = _wait_job(client, second.json()["job"])
    assert s2["result"]["query"] == "another"
    assert [q for _, q in fake.calls] == ["the square moves", "another"]


def test_ground_errors(live_client: Any, tiny_video: Path) -> None:
    client, _, _ = live_client
    empty = client.post("/api/ground", json={"path": str(tiny_video), "query": "  "})
    assert empty.status_code == 400 and "query: empty" in empty.json()["error"]
    outside = client.post("/api/ground", json={"path": "/etc/passwd", "query": "x"})
    assert outside.status_code == 403
    none = client.post("/api/ground", json={"query": "x"})
    assert none.status_code == 400 and "choose a video" in none.json()["error"]
    refused = client.post("/api/ground", json={"path": str(tiny_video), "query": "boom"})
    s = _wait_job(client, refused.json()["job"])
    assert s["state"] == "error" and "refuses 'boom'" in s["error"]
    assert client.get("/api/jobs/nope").status_code == 404


def test_jobs_queue_in_order(live_client: Any, tiny_video: Path) -> None:
    client, fake, _ = live_client
    fake.gate.clear()  # hold the worker inside the first job
    a = client.post("/api/ground", json={"path": str(tiny_video), "query": "a"}).json()["job"]
    b = client.post("/api/ground", json={"path": str(tiny_video), "query": "b"}).json()["job"]
    for _ in range(100):
        if client.get(f"/api/jobs/{a}").json()["state"] == "running":
            break
        time.sleep(0.02)
    sb = client.get(f"/api/jobs/{b}").json()
    assert sb["state"] == "queued" and sb["position"] == 1
    sa = client.get(f"/api/jobs/{a}").json()  # the page's progress bar reads these
    assert (sa["stage"], sa["fraction"], sa["position"]) == ("decode+extract", 0.5, None)
    fake.gate.set()
    assert _wait_job(client, b)["state"] == "done"


def test_upload_checks(live_client: Any, tiny_video: Path) -> None:
    client, _, app = live_client
    data = tiny_video.read_bytes()
    ok = client.post("/api/upload", params={"name": "clip.MP4"}, content=data)
    assert ok.status_code == 200, ok.text
    upload = ok.json()["upload"]
    assert ok.json()["duration"] == pytest.approx(4.0, abs=0.2)
    assert client.get(f"/media/upload/{upload}").content == data
    s = _wait_job(
        client, client.post("/api/ground", json={"upload": upload, "query": "q"}).json()["job"]
    )
    assert s["state"] == "done" and s["video"] == "clip.MP4"

    too_big = client.post("/api/upload", params={"name": "big.mp4"}, content=b"\0" * 200_001)
    assert too_big.status_code == 413 and "upload limit" in too_big.json()["error"]
    wrong_name = client.post("/api/upload", params={"name": "notes.txt"}, content=data)
    assert wrong_name.status_code == 415
    not_video = client.post("/api/upload", params={"name": "fake.mp4"}, content=b"hello" * 100)
    assert not_video.status_code == 415 and "not a video container" in not_video.json()["error"]
    broken = client.post("/api/upload", params={"name": "cut.mp4"}, content=data[:600])
    assert broken.status_code == 400 and "cannot decode" in broken.json()["error"]
    assert client.post("/api/ground", json={"upload": "zzz", "query": "q"}).status_code == 404
    upload_dir = app.state.sidetune.uploads.dir
    assert upload_dir is not None and upload_dir.name.startswith("sidetune-serve-")
    kept = sorted(p.name for p in upload_dir.iterdir())
    assert kept == [f"{upload}.mp4"]  # refused uploads leave nothing behind


def test_second_upload_while_one_is_processing_is_refused(tmp_path: Path) -> None:
    store = UploadStore(max_bytes=10)
    assert store.dir is None  # nothing on disk before the first upload
    try:
        uid, path = store.begin("a.mp4", 5)
        with pytest.raises(UploadError, match="another upload") as exc:
            store.begin("b.mp4", 5)
        assert exc.value.status == 409
        store.finish(uid, path, "a.mp4", ok=False)
        uid2, path2 = store.begin("b.mp4", 5)  # free again
        store.finish(uid2, path2, "b.mp4", ok=False)
    finally:
        store.cleanup()
    assert store.dir is not None and not store.dir.exists()


def test_concurrent_upload_answers_409(
    live_client: Any, tiny_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sidetune.app.server as server

    client, _, _ = live_client
    gate, entered = threading.Event(), threading.Event()
    probe = server.probe_video

    def slow_probe(path: Path, name: str) -> float:  # runs in the thread pool, loop stays free
        entered.set()
        gate.wait(10)
        return probe(path, name)

    monkeypatch.setattr(server, "probe_video", slow_probe)
    result: dict[str, Any] = {}
    data = tiny_video.read_bytes()
    t = threading.Thread(
        target=lambda: result.update(
            r=client.post("/api/upload", params={"name": "a.mp4"}, content=data)
        )
    )
    t.start()
    assert entered.wait(10)
    second = client.post("/api/upload", params={"name": "b.mp4"}, content=data)
    gate.set()
    t.join(10)
    assert second.status_code == 409 and "another upload" in second.json()["error"]
    assert result["r"].status_code == 200


def test_parse_size_and_sniff() -> None:
    assert parse_size("2GB") == 2 << 30 and parse_size("500MB") == 500 << 20
    assert parse_size("1048576") == 1 << 20 and parse_size("1.5k") == 1536
    with pytest.raises(SidetuneError, match="--max-upload"):
        parse_size("lots")
    assert sniff_container(b"\0\0\0\x20ftypisom\0\0") == "mp4"
    assert sniff_container(b"\x1a\x45\xdf\xa3rest") == "matroska"
    assert sniff_container(b"RIFF\0\0\0\0AVI LIST") == "avi"
    assert sniff_container(b"<html>") is None


def test_live_off_without_run(tmp_path: Path) -> None:
    gt, pred = _gt_pred(tmp_path, [[4, 8, 0.9]])
    with TestClient(create_app(AppConfig(pred=pred, gt=gt, dataset="charades"))) as client:
        assert client.get("/api/info").json()["live"] is False
        resp = client.post("/api/ground", json={"path": str(pred), "query": "x"})
    assert resp.status_code == 400 and "--run" in resp.json()["error"]


def test_live_error_is_reported(tmp_path: Path) -> None:
    gt, pred = _gt_pred(tmp_path, [[4, 8, 0.9]])
    reason = "live grounding is off: run: the run records no extraction settings"
    app = create_app(AppConfig(pred=pred, gt=gt, dataset="charades", live_error=reason))
    with TestClient(app) as client:
        assert client.get("/api/info").json()["live_error"] == reason
        resp = client.post("/api/ground", json={"path": str(pred), "query": "x"})
    assert resp.status_code == 400 and resp.json()["error"] == reason
