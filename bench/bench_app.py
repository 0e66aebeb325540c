"""Speed of the prediction browser (``sidetune serve``) on QVHighlights val, in headless Chromium.

Serves the shared fixture (1550 queries, the official sample predictions) and drives the
distribution's Chromium with Playwright. Reports medians over ``--runs``:

* server: reading + scoring + per-query rows (``load_browser``), once at start-up;
* page load: navigation to ``#browse`` until the metrics and the first rows are drawn
  (wall clock from Python, and the page's own fetch + render time);
* filters: each control applied to all 1550 rows, from the input event to the next frame
  (the page's ``performance.now()``), and the wall clock until the row count updates;
* opening one query's page (timeline + saliency + windows table).

    python bench/bench_app.py [--runs 5] [--shared PATH] [--out bench/results/app.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.app.live_server: the same server and browser as the tests

from shared_data import find_shared  # noqa: E402
from sidetune.app.browser import load_browser  # noqa: E402
from sidetune.app.server import AppConfig  # noqa: E402
from sidetune.utils.io import write_json  # noqa: E402

# (name, action): "verb selector value", steps joined by "|"
FILTERS: list[tuple[str, str]] = [
    ("search 'woman' (typed at once)", "fill #search woman"),
    ("clear search", "fill #search "),
    ("kind = no overlap", "select #kind-filter no overlap"),
    ("IoU 0.5 -> 0.7", "select #kind-iou 0.7"),
    ("GT length = short", "select #bucket-filter short"),
    ("clear kind + length", "select #kind-filter |select #bucket-filter |select #kind-iou 0.5"),
    ("sort by top-1 IoU", "click th[data-sort=top1_iou]"),
    ("sort by query text", "click th[data-sort=query]"),
    ("show 250 more rows", "click #show-more"),
]


def act(page: Any, action: str) -> None:
    for step in action.split("|"):
        verb, selector, *rest = step.split(" ", 2)
        value = rest[0] if rest else ""
        if verb == "fill":
            page.fill(selector, value)
        elif verb == "select":
            page.select_option(selector, value)
        else:
            page.click(selector)


def one_run(page: Any, url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    page.goto(f"{url}/#browse")
    page.wait_for_function("window.__sidetune && window.__sidetune.loadMs !== null")
    out["page load (wall)"] = 1000 * (time.perf_counter() - t0)
    out["page load (fetch + render, in page)"] = page.evaluate("window.__sidetune.loadMs")
    for name, action in FILTERS:
        page.evaluate("window.__sidetune.lastFilterMs = null")
        t = time.perf_counter()
        act(page, action)
        page.wait_for_function("window.__sidetune.lastFilterMs !== null")
        out[f"{name} (wall)"] = 1000 * (time.perf_counter() - t)
        out[f"{name} (in page)"] = page.evaluate("window.__sidetune.lastFilterMs")
    t = time.perf_counter()
    page.click("#queries tbody tr")
    page.wait_for_selector("#query-view:not([hidden]) #q-saliency polyline")
    out["open a query (wall)"] = 1000 * (time.perf_counter() - t)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--shared", help="folder holding data/ and fixtures/")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "app.json"))
    args = parser.parse_args()
    import shutil

    from tests.app.live_server import browser_page, serve

    if not (os.environ.get("SIDETUNE_CHROMIUM") or shutil.which("chromium")):
        sys.exit("needs the distribution's Chromium: apt-get install chromium")
    shared = find_shared(args.shared, "fixtures/qvhighlights_eval")
    pred = shared / "fixtures" / "qvhighlights_eval" / "sample_val_preds.jsonl"
    gt = shared / "data" / "qvhighlights" / "highlight_val_release.jsonl"
    server_s = [load_browser(pred, gt, "qvhighlights").load_seconds for _ in range(args.runs)]
    runs: list[dict[str, float]] = []
    with serve(AppConfig(pred=pred, gt=gt)) as url:
        with urllib.request.urlopen(f"{url}/api/browser/queries") as r:
            rows_bytes = len(r.read())
        for _ in range(args.runs):
            with browser_page() as page:  # a fresh browser each run: a cold page load
                runs.append(one_run(page, url))
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"prediction browser, QVHighlights val (1550 queries), median of {args.runs} runs")
    print(f"{'server: read + score + rows':<44} {1000 * statistics.median(server_s):8.1f} ms")
    print(f"{'/api/browser/queries payload':<44} {rows_bytes / 1024:8.1f} KiB")
    for k, v in medians.items():
        print(f"{k:<44} {v:8.1f} ms")
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "runs": args.runs,
        "server_load_ms": 1000 * statistics.median(server_s),
        "queries_payload_bytes": rows_bytes,
        "median_ms": medians,
        "all_runs_ms": runs,
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
