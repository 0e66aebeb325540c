"""Speed of ``sidetune evaluate`` on QVHighlights val (the official sample predictions).

Times, in one process, reading the two jsonl files (annotations + predictions, with all
validation) and computing the metrics, over several runs; reports the median of each, checks
the values against the official evaluator's output, and writes bench/results/metrics.json
atomically. Target: read + compute < 2 s (the official evaluator takes ~40 s on 2 cores).

    python bench/bench_metrics.py [--runs 5] [--shared PATH] [--out bench/results/metrics.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from shared_data import find_shared
from sidetune.grounding.annotations import load_annotations
from sidetune.grounding.metrics import evaluate_predictions
from sidetune.grounding.predictions import read_predictions
from sidetune.utils.io import write_json

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 2.0


def time_once(gt_path: Path, pred_path: Path) -> tuple[float, float, dict[str, Any]]:
    t0 = time.perf_counter()
    gt = load_annotations(gt_path, "qvhighlights")
    preds = read_predictions(pred_path)
    t1 = time.perf_counter()
    metrics = evaluate_predictions(preds, gt.records, "qvhighlights", validate=False)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--shared", help="folder holding data/ and fixtures/")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "metrics.json"))
    args = parser.parse_args()

    shared = find_shared(args.shared, "data/qvhighlights")
    gt_path = shared / "data" / "qvhighlights" / "highlight_val_release.jsonl"
    fixtures = shared / "fixtures" / "qvhighlights_eval"
    pred_path = fixtures / "sample_val_preds.jsonl"
    reference = json.loads((fixtures / "sample_val_preds_metrics_raw.json").read_text())

    reads, computes, totals = [], [], []
    metrics: dict[str, Any] = {}
    for _ in range(max(args.runs, 1)):
        read_s, compute_s, metrics = time_once(gt_path, pred_path)
        reads.append(read_s)
        computes.append(compute_s)
        totals.append(read_s + compute_s)
    exact = metrics == reference
    result = {
        "benchmark": "qvhighlights val metrics (official sample predictions)",
        "queries": len(read_predictions(pred_path)),
        "runs": len(totals),
        "read_s_median": statistics.median(reads),
        "compute_s_median": statistics.median(computes),
        "total_s_median": statistics.median(totals),
        "total_s_min": min(totals),
        "target_s": TARGET_S,
        "under_target": statistics.median(totals) < TARGET_S,
        "matches_official": exact,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpu_count": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
    }
    rows = [
        ("read (gt + pred jsonl)", result["read_s_median"]),
        ("compute (MR + HD)", result["compute_s_median"]),
        ("total", result["total_s_median"]),
    ]
    print(f"QVHighlights val, {result['queries']} queries, median of {result['runs']} runs")
    print(f"{'stage':<24}  {'seconds':>8}")
    for name, value in rows:
        print(f"{name:<24}  {value:>8.3f}")
    print(
        f"target < {TARGET_S:.1f} s: {'yes' if result['under_target'] else 'NO'}; "
        f"values equal the official output: {'yes' if exact else 'NO'}"
    )
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
