"""``sidetune evaluate --gt GT.jsonl --pred PRED.jsonl [--dataset D] [--out metrics.json]``.

Scores an official-format predictions jsonl against an annotation jsonl, prints the brief
metrics as a table and, with ``--out``, writes the full metrics JSON atomically (the official
QVHighlights evaluator's layout for ``qvhighlights``).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from sidetune.grounding.annotations import DATASETS, load_annotations
from sidetune.grounding.metrics import evaluate_predictions
from sidetune.grounding.predictions import match_qids, read_predictions
from sidetune.utils.io import write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, metavar="GT.jsonl", help="annotation jsonl")
    parser.add_argument("--pred", required=True, metavar="PRED.jsonl", help="predictions jsonl")
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        default="qvhighlights",
        help="annotation layout and metric set (default: qvhighlights)",
    )
    parser.add_argument("--out", metavar="metrics.json", help="write the full metrics JSON here")


def format_table(brief: dict[str, Any], title: str) -> str:
    """Two-column text table of the brief metrics."""
    width = max([len(k) for k in brief] + [len("metric")])
    lines = [title, f"{'metric':<{width}}  {'value':>7}", f"{'-' * width}  {'-' * 7}"]
    lines += [f"{k:<{width}}  {v:>7.2f}" for k, v in brief.items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    ground_truth = load_annotations(args.gt, args.dataset, strict=True)
    predictions = read_predictions(args.pred)
    match_qids(
        (p["qid"] for p in predictions),
        (r.qid for r in ground_truth),
        pred_name=str(args.pred),
        gt_name=str(args.gt),
    )
    metrics = evaluate_predictions(predictions, ground_truth.records, args.dataset, validate=False)
    elapsed = time.perf_counter() - start
    title = f"{args.dataset}: {len(predictions)} queries, {elapsed:.2f} s"
    print(format_table(metrics["brief"], title))
    if args.out:
        write_json(args.out, metrics)
        print(f"wrote {args.out}")
    return 0
