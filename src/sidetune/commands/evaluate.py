"""``sidetune evaluate --gt GT.jsonl --pred PRED.jsonl [--dataset D] [--out metrics.json]``.

Scores an official-format predictions jsonl against an annotation jsonl, prints the brief
metrics as a table and, with ``--out``, writes the full metrics JSON atomically (the official
QVHighlights evaluator's layout for ``qvhighlights``).

``sidetune evaluate --run DIR [key=value ...]`` evaluates a trained run instead, dispatching on
its config's task: a grounding run predicts ``--split`` and scores it; a recognition run does
the multi-view test (``eval.num_crops`` x ``eval.num_clips``) on ``data.val``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from sidetune.config import config_task
from sidetune.errors import SidetuneError
from sidetune.grounding.annotations import CLIP_LENGTH, DATASETS, load_annotations
from sidetune.grounding.metrics import evaluate_predictions
from sidetune.grounding.predictions import (
    check_saliency_lengths,
    match_qids,
    read_prediction_lines,
)
from sidetune.utils.io import write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", metavar="GT.jsonl", help="annotation jsonl")
    parser.add_argument("--pred", metavar="PRED.jsonl", help="predictions jsonl")
    parser.add_argument("--run", metavar="DIR", help="evaluate a trained run directory instead")
    parser.add_argument(
        "--split", default="val", choices=("train", "val", "test"), help="with --run (grounding)"
    )
    parser.add_argument(
        "--checkpoint", default="best", help="with --run: best | last (default: best)"
    )
    parser.add_argument("overrides", nargs="*", help="with --run: key=value config overrides")
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
    if args.run is not None:
        if args.gt or args.pred:
            raise SidetuneError("--run evaluates a trained run; do not combine it with --gt/--pred")
        return _evaluate_run(args)
    if not args.gt or not args.pred:
        raise SidetuneError("evaluate needs --gt and --pred (or --run DIR)")
    if args.overrides:
        raise SidetuneError(f"unexpected arguments {args.overrides}: overrides go with --run")
    start = time.perf_counter()
    ground_truth = load_annotations(args.gt, args.dataset, strict=True)
    predictions, lines = read_prediction_lines(args.pred)
    match_qids(
        (p["qid"] for p in predictions),
        (r.qid for r in ground_truth),
        pred_name=str(args.pred),
        gt_name=str(args.gt),
    )
    if args.dataset == "qvhighlights":  # only QVHighlights scores saliency
        clip = CLIP_LENGTH[args.dataset]
        num_clips = {r.qid: math.ceil(r.duration / clip - 1e-9) for r in ground_truth}
        check_saliency_lengths(predictions, num_clips, str(args.pred), lines)
    if len(predictions) > 10_000:
        print(f"scoring {len(predictions)} queries ...", file=sys.stderr, flush=True)
    metrics = evaluate_predictions(predictions, ground_truth.records, args.dataset, validate=False)
    elapsed = time.perf_counter() - start
    title = f"{args.dataset}: {len(predictions)} queries, {elapsed:.2f} s"
    print(format_table(metrics["brief"], title))
    if args.out:
        write_json(args.out, metrics)
        print(f"wrote {args.out}")
    return 0


def _evaluate_run(args: argparse.Namespace) -> int:
    config = Path(args.run) / "config.yaml"
    if not config.is_file():
        raise SidetuneError(f"{config}: not found; is {args.run} a run directory?")
    task = config_task(config)
    if task == "grounding":
        from sidetune.grounding.predictor import predict

        res = predict(args.run, args.split, args.out, args.overrides, checkpoint=args.checkpoint)
        if res["metrics"] is None:
            raise SidetuneError(
                f"the {args.split} split of {args.run} has no ground truth to score"
            )
        print(format_table(res["metrics"]["brief"], f"{args.run} ({args.split})"))
        print(f"wrote {res['predictions']} and {res['metrics_path']}")
        return 0
    from sidetune.recognition.recipe import evaluate_run

    metrics = evaluate_run(args.run, args.overrides, which=args.checkpoint, out=args.out)
    print(format_table(metrics, f"{args.run} (multi-view test)"))
    return 0
