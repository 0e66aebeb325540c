"""``sidetune serve`` in a real browser: headless Chromium from the distribution, via Playwright.

The prediction browser on the shared fixture (metrics equal ``sidetune evaluate``'s, filters,
sorting, a query's page), a bad predictions file, and one live grounding on the embedded
default (a tiny trained run laid out as ``make demo`` lays it out, with a rendered mp4).
Screenshots go to ``$SIDETUNE_SCREENSHOTS`` when set (the README's come from
``SIDETUNE_SCREENSHOTS=docs/app pytest -m browser tests/app``), else to a temp folder.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import pytest

from sidetune.app.browser import load_browser
from sidetune.app.server import AppConfig
from sidetune.cli import main
from sidetune.grounding.annotations import load_annotations
from sidetune.grounding.render import RenderConfig, render_benchmark
from tests.app.conftest import write_mp4
from tests.app.live_server import browser_page, chromium_path, serve
from tests.shared_data import shared_path

pytestmark = pytest.mark.browser
MAX_SCREENSHOT = 300_000  # bytes


@pytest.fixture(autouse=True)
def _need_chromium() -> None:
    chromium_path()
    pytest.importorskip("playwright.sync_api", reason="pip install playwright")


def screenshot(page: Any, name: str, tmp_path: Path, keep: bool = True) -> Path:
    """Save a PNG (to ``$SIDETUNE_SCREENSHOTS`` when set and ``keep``); checks its size."""
    folder = Path(os.environ.get("SIDETUNE_SCREENSHOTS") or tmp_path) if keep else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path))
    assert 0 < path.stat().st_size < MAX_SCREENSHOT
    return path


def test_prediction_browser_on_shared_fixture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pred = shared_path("fixtures", "qvhighlights_eval", "sample_val_preds.jsonl")
    gt = shared_path("data", "qvhighlights", "highlight_val_release.jsonl")
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred), "--out", str(out)]) == 0
    brief = json.loads(out.read_text())["brief"]
    rows = load_browser(pred, gt, "qvhighlights").rows
    capsys.readouterr()

    with serve(AppConfig(pred=pred, gt=gt)) as url, browser_page() as page:
        page.goto(f"{url}/#browse")
        page.wait_for_selector("#metrics td[data-metric]")
        shown = {
            td.get_attribute("data-metric"): td.inner_text()
            for td in page.query_selector_all("#metrics td[data-metric]")
        }
        assert shown == {k: f"{v:.2f}" for k, v in brief.items()}  # same 14 numbers as evaluate
        assert page.inner_text("#row-count") == "1550 of 1550 queries"
        screenshot(page, "browser.png", tmp_path)

        # Filter: short-GT queries whose top-1 is too short at IoU 0.5.
        page.select_option("#kind-filter", "too short")
        page.select_option("#bucket-filter", "short")
        want = [r for r in rows if r["kind@0.5"] == "too short" and "short" in r["buckets"]]
        assert page.inner_text("#row-count") == f"{len(want)} of 1550 queries"
        assert [int(q) for q in page.eval_on_selector_all(
            "#queries tbody tr", "rs => rs.map(r => r.dataset.qid)")] == [r["qid"] for r in want]  # fmt: skip
        # The same kind at IoU 0.7 is a different set.
        page.select_option("#kind-iou", "0.7")
        want7 = [r for r in rows if r["kind@0.7"] == "too short" and "short" in r["buckets"]]
        assert page.inner_text("#row-count") == f"{len(want7)} of 1550 queries"
        page.select_option("#kind-iou", "0.5")
        page.select_option("#bucket-filter", "")
        page.select_option("#kind-filter", "")
        # Search and sort.
        page.fill("#search", "facetime")
        n_search = sum("facetime" in r["query"].lower() for r in rows)
        assert page.inner_text("#row-count") == f"{n_search} of 1550 queries"
        page.fill("#search", "")
        page.click("th[data-sort=top1_iou]")
        page.click("th[data-sort=top1_iou]")  # descending
        top = page.eval_on_selector_all(
            "#queries tbody tr td.top1", "ts => ts.map(t => +t.textContent)"
        )
        assert len(top) == 250 and top == sorted(top, reverse=True)
        assert top[0] == round(max(r["top1_iou"] for r in rows), 3)
        page.click("#show-more")
        top = page.eval_on_selector_all(
            "#queries tbody tr td.top1", "ts => ts.map(t => +t.textContent)"
        )
        assert len(top) == 500 and top == sorted(top, reverse=True)

        # One query's page: GT and predicted windows on the timeline, both saliency curves.
        page.fill("#search", "2579")
        page.click("#queries tbody tr")
        page.wait_for_selector("#query-view:not([hidden]) #q-timeline rect.gt")
        assert "facetime" in page.inner_text("#q-title")
        assert page.eval_on_selector_all("#q-timeline rect[data-rank]", "r => r.length") == 10
        assert page.eval_on_selector_all("#q-timeline rect.gt", "r => r.length") == 1
        series = page.eval_on_selector_all(
            "#q-saliency polyline", "ps => ps.map(p => p.dataset.series)"
        )
        assert series == ["pred", "gt"]
        assert page.inner_text("#q-windows tbody tr:nth-child(2) td:nth-child(5)") == "0.889"
        screenshot(page, "query.png", tmp_path)


def test_bad_predictions_message_in_page(tmp_path: Path) -> None:
    gt = tmp_path / "gt.jsonl"
    gt.write_text(json.dumps({"qid": 1, "query": "q", "vid": "v", "duration": 30,
                              "relevant_windows": [[0, 4]]}) + "\n")  # fmt: skip
    pred = tmp_path / "pred.jsonl"
    pred.write_text('{"qid": 1, "pred_relevant_windows": [[0, 4, 0.5]]}\n{"qid": 2, "pred_rel')
    videos = tmp_path / "videos"
    videos.mkdir()
    write_mp4(videos / "v.mp4")  # the GT's vid: the query page shows it
    config = AppConfig(pred=pred, gt=gt, dataset="charades", videos=[videos])
    with serve(config) as url, browser_page() as page:
        page.goto(f"{url}/#browse")
        page.wait_for_selector("#browser-error:not([hidden])")
        text = page.inner_text("#browser-error")
        assert text.startswith(f"{pred}:2: invalid JSON") and "Traceback" not in text

        # The page's "open" form: a good file loads, a field error is shown, a path outside
        # the allowed directories is refused.
        good = tmp_path / "good.jsonl"
        good.write_text('{"qid": 1, "pred_relevant_windows": [[1, 3, 0.5]]}\n')
        page.click("#open-files summary")
        page.fill("#open-pred", str(good))
        page.fill("#open-gt", str(gt))
        page.select_option("#open-dataset", "charades")
        page.click("#open-form button")
        page.wait_for_selector("#metrics td[data-metric='R1@0.7']")
        assert page.inner_text("#metrics td[data-metric='R1@0.5']") == "100.00"
        assert page.inner_text("#metrics td[data-metric='R1@0.7']") == "0.00"  # IoU 0.5
        assert not page.is_visible("#browser-error")
        # The query's page plays its video; clicking the predicted window seeks to its start.
        page.click("#queries tbody tr")
        page.wait_for_selector("#q-player:not([hidden])")
        page.wait_for_function("document.getElementById('q-player').readyState >= 1")
        page.click("#q-timeline rect[data-rank='1']")
        page.wait_for_function(
            "Math.abs(document.getElementById('q-player').currentTime - 1) < 0.3"
        )
        page.click("#back")
        good.write_text('{"qid": 1, "pred_relevant_windows": [[4, 0, 0.5]]}\n')
        page.click("#open-form button")
        page.wait_for_selector("#browser-error:not([hidden])")
        assert page.inner_text("#browser-error") == (
            f"{good}:1: field 'pred_relevant_windows[0]': end 0 < start 4"
        )
        page.fill("#open-pred", "/etc/passwd")
        page.click("#open-form button")
        page.wait_for_function(
            "document.getElementById('browser-error').textContent.includes('outside')"
        )
        assert page.inner_text("#browser-error").startswith("/etc/passwd: outside the directories")


# ------------------------------------------------------------------------------------------------
# Live grounding on the embedded default
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make demo``'s layout at toy size: DIR/run, DIR/preds_val.jsonl, DIR/synthetic, mp4s.

    The run trains on synthetic features shaped like the tiny InternVideo2's (32-d video and
    text, 3 layers) and records that backbone in ``extract_meta.json``, so
    ``Grounder.from_run`` rebuilds it (and its tiny BERT tower with the packaged vocabulary)
    and grounds a real video end to end.
    """
    from sidetune.grounding.synthetic import SynthConfig, data_overrides, generate, write

    demo = tmp_path_factory.mktemp("demo_out")
    data = demo / "synthetic"
    synth = SynthConfig(videos=16, layers=3, video_dim=32, text_dim=32, latent_dim=8,
                        min_duration=20.0, max_duration=40.0)  # fmt: skip
    write(generate(synth), data)
    (data / "extract_meta.json").write_text(
        json.dumps({"backbone": "internvideo2-tiny", "layers": [2, 3, 4]})
    )
    run = demo / "run"
    overrides = [
        f"run_dir={run}", *data_overrides(data), "data.max_clips=20",
        "model.video_dim=32", "model.text_dim=32", "model.hidden_dim=16", "model.num_heads=2",
        "model.num_queries=4", "model.num_levels=3", "model.rdsa_query_dim=8", "model.roi_size=4",
        "train.epochs=1", "train.batch_size=8", "train.warmup_iters=2", "train.eval_every=1",
        "train.progress=false", "train.tensorboard=false",
    ]  # fmt: skip
    assert main(["train", "sdst_synthetic", *overrides]) == 0
    assert (run / "extract_meta.json").is_file()
    preds = demo / "preds_val.jsonl"
    assert main(["predict", "--run", str(run), "--split", "val", "--out", str(preds)]) == 0
    # One video of the rendered benchmark (`sidetune synth grounding --render`): coloured
    # shapes moving, a query of the grammar with its GT windows.
    render_benchmark(
        RenderConfig(videos=3, min_duration=20.0, max_duration=24.0), demo / "rendered"
    )
    return demo


def test_live_grounding_on_embedded_default(demo_dir: Path, tmp_path: Path) -> None:
    from sidetune.commands.serve import add_arguments, build_config
    from sidetune.grounding.inference import Grounder

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cache = tmp_path / "cache"
    config = build_config(
        parser.parse_args(["--run", str(demo_dir / "run"), "--cache-dir", str(cache)])
    )
    assert config.pred == (demo_dir / "preds_val.jsonl").resolve()
    assert config.videos == [(demo_dir / "rendered").resolve()]  # the run's GT is elsewhere
    rendered = sorted((demo_dir / "rendered" / "videos").glob("*.mp4"))
    video = rendered[0].resolve()  # the picker's first entry
    record = next(
        r
        for split in ("train", "val", "test")
        for r in load_annotations(demo_dir / "rendered" / f"{split}.jsonl")
        if r.vid == video.stem
    )
    query = record.query
    expected = Grounder.from_run(demo_dir / "run", cache_dir=tmp_path / "ref").ground(video, query)
    want = expected[0].to_dict()

    with serve(config) as url, browser_page() as page:
        page.goto(url)  # the live view is the default when a run is given
        page.wait_for_selector("#view-live:not([hidden])")
        assert page.eval_on_selector("#video-select", "s => s.value") == f"path:{video}"
        page.wait_for_function("document.getElementById('player').readyState >= 1")
        duration = page.eval_on_selector("#player", "v => v.duration")
        assert duration == pytest.approx(record.duration, abs=0.3)
        page.fill("#query-input", query)
        page.click("#ground-btn")
        page.wait_for_selector("#moments li", timeout=60_000)
        got = page.eval_on_selector_all(
            "#moments li", "ls => ls.map(l => [+l.dataset.start, +l.dataset.end, +l.dataset.score])"
        )
        assert len(got) == len(want["moments"]) > 0
        for shown, ref in zip(got, want["moments"]):
            assert shown == pytest.approx(ref, abs=1e-6)
        assert page.eval_on_selector_all("#live-timeline rect.moment", "r => r.length") == len(got)
        assert page.eval_on_selector_all("#live-saliency polyline", "p => p.length") == 1

        # Clicking a moment seeks the player to its start.
        start = got[-1][0]
        page.click("#moments li:last-child")
        page.wait_for_function(
            f"Math.abs(document.getElementById('player').currentTime - {start}) < 0.3"
        )
        page.evaluate("window.scrollTo(0, 0)")
        screenshot(page, "live.png", tmp_path, keep=False)  # the README shows the real demo's

        # A second query on the same video: listed in the history, served from cached features.
        other = "a green triangle goes up" if "green" not in query else "a red circle goes left"
        page.fill("#query-input", other)
        page.click("#ground-btn")
        page.wait_for_function("document.querySelectorAll('#history li').length === 2")
        assert page.inner_text("#moments-query") == other
        cached = page.eval_on_selector_all("#history li", "ls => ls.map(l => l.dataset.cached)")
        assert cached == ["true", "false"]  # newest first: the second query skipped extraction
        assert "from the cache" in page.inner_text("#ground-stage")
        assert any(cache.rglob("*")), "the grounder caches under --cache-dir"

        # Uploads: a file that is not a video gets a clear message; a real one is grounded.
        bad = tmp_path / "notes.mp4"
        bad.write_text("not a video")
        page.set_input_files("#upload-input", str(bad))
        page.wait_for_selector("#live-error:not([hidden])")
        assert "notes.mp4: not a video container" in page.inner_text("#live-error")
        page.set_input_files("#upload-input", str(video))
        page.wait_for_function(
            "document.getElementById('video-select').value.startsWith('upload:')"
        )
        assert f"{video.name} ({record.duration:.1f} s)" in page.inner_text("#upload-status")
        assert not page.is_visible("#live-error")
        page.fill("#query-input", query)
        page.click("#ground-btn")
        page.wait_for_selector("#moments li")
        again = page.eval_on_selector_all("#moments li", "ls => ls.map(l => +l.dataset.start)")
        assert again == pytest.approx([m[0] for m in want["moments"]], abs=1e-6)
        assert "from the cache" in page.inner_text("#ground-stage")  # same bytes, same features

        # The browser view of the same server shows the demo's val predictions.
        page.click("#tab-browse")
        page.wait_for_selector("#metrics td[data-metric]")
        n_val = len((demo_dir / "preds_val.jsonl").read_text().splitlines())
        assert page.inner_text("#row-count") == f"{n_val} of {n_val} queries"


# ------------------------------------------------------------------------------------------------
# The real `make demo` output (opt-in: SIDETUNE_DEMO_DIR=demo_out)
# ------------------------------------------------------------------------------------------------


def test_real_demo(tmp_path: Path) -> None:
    """``sidetune serve --run DIR/run`` on a finished ``make demo``: a held-out test video is
    grounded from the page and its top-1 moment is compared with the GT; the browser shows the
    demo's val metrics and plays a query's video. Skipped unless ``SIDETUNE_DEMO_DIR`` is set."""
    from sidetune.app.browser import best_gt
    from sidetune.commands.serve import add_arguments, build_config

    demo = Path(os.environ.get("SIDETUNE_DEMO_DIR") or "")
    if not os.environ.get("SIDETUNE_DEMO_DIR") or not (demo / "run" / "config.yaml").is_file():
        pytest.skip("set SIDETUNE_DEMO_DIR to a finished `make demo` output (e.g. demo_out)")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = build_config(
        parser.parse_args(["--run", str(demo / "run"), "--cache-dir", str(tmp_path / "cache")])
    )
    # The held-out example the demo grounded itself (demo_out/ground_example.json).
    example = json.loads((demo / "ground_example.json").read_text())
    video = (demo / "rendered" / "videos" / Path(example["video"]).name).resolve()
    record = next(
        r for r in load_annotations(demo / "rendered" / "test.jsonl") if r.vid == video.stem
    )
    assert record.query == example["query"]
    val_metrics = json.loads((demo / "preds_val_metrics.json").read_text())["brief"]

    with serve(config) as url, browser_page(height=1000) as page:
        page.goto(url)
        page.wait_for_selector("#view-live:not([hidden])")
        page.select_option("#video-select", f"path:{video}")
        page.wait_for_function("document.getElementById('player').readyState >= 1")
        page.fill("#query-input", record.query)
        page.click("#ground-btn")
        page.wait_for_selector("#moments li", timeout=120_000)
        got = page.eval_on_selector_all(
            "#moments li", "ls => ls.map(l => [+l.dataset.start, +l.dataset.end, +l.dataset.score])"
        )
        assert len(got) == len(example["moments"])
        for shown, ref in zip(got, example["moments"]):
            assert shown == pytest.approx(ref, abs=1e-3)  # the demo's own `ground` result
        top = got[0][:2]
        _, top_iou = best_gt(top, record.windows)
        page.click("#moments li")
        page.wait_for_function(
            f"Math.abs(document.getElementById('player').currentTime - {top[0]}) < 0.5"
        )
        seek_mid = """([id, t]) => new Promise((done) => { const v = document.getElementById(id);
            v.pause(); v.addEventListener('seeked', done, { once: true }); v.currentTime = t; })"""
        page.evaluate(seek_mid, ["player", (top[0] + top[1]) / 2])  # the event on screen
        page.evaluate("window.scrollTo(0, 0)")
        screenshot(page, "demo_live.png", tmp_path)

        page.click("#tab-browse")
        page.wait_for_selector("#metrics td[data-metric]")
        shown = {
            td.get_attribute("data-metric"): td.inner_text()
            for td in page.query_selector_all("#metrics td[data-metric]")
        }
        assert shown == {
            k: "nan" if v is None or v != v else f"{v:.2f}" for k, v in val_metrics.items()
        }
        page.click("#queries tbody tr")
        page.wait_for_selector("#q-player:not([hidden])")
        page.wait_for_function("document.getElementById('q-player').readyState >= 1")
        qid = int(page.eval_on_selector("#query-view", "v => v.dataset.qid"))
        shown_q = load_annotations(demo / "rendered" / "val.jsonl").by_qid()[qid]
        page.evaluate(seek_mid, ["q-player", sum(shown_q.windows[0]) / 2])
        screenshot(page, "demo_query.png", tmp_path)
    assert top_iou >= 0.5, "the demo's model should find this held-out moment"
