"""``sidetune predict --run DIR --split val|test|train [--out preds.jsonl] [key=value ...]``.

Rebuilds the run from ``DIR/config.yaml`` (overrides apply on top, e.g. ``data.test=...``) and
its best checkpoint (``last`` when no validation ran), writes the official predictions jsonl
atomically, and when the split has ground truth prints the brief metrics and writes the full
evaluator output next to the predictions.
"""

from __future__ import annotations

import argparse

from sidetune.commands import add_run_split_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_split_arguments(parser, "predictions jsonl (default: RUN/preds_<split>.jsonl)")


def run(args: argparse.Namespace) -> int:
    from sidetune.grounding.recipe import brief_metrics, format_metrics, predict

    result = predict(
        args.run,
        split=args.split,
        out=args.out,
        overrides=list(args.overrides),
        checkpoint=args.checkpoint,
        batch_size=args.batch_size,
        device=args.device,
    )
    print(
        f"wrote {result['num_rows']} predictions to {result['predictions']} (checkpoint {result['checkpoint']})"
    )
    if result["metrics"] is not None:
        print(format_metrics(brief_metrics(result["metrics"]), title=f"{args.split} metrics"))
        print(f"full metrics: {result['metrics_path']}")
    return 0
