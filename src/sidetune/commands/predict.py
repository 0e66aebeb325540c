"""``sidetune predict --run DIR --split val|test|train [--out preds.jsonl] [key=value ...]``.

Rebuilds the run from ``DIR/config.yaml`` (overrides apply on top, e.g. ``data.test=...``) and
its best checkpoint (``last`` when no validation ran), writes the official predictions jsonl
atomically, and when the split has ground truth prints the brief metrics and writes the full
evaluator output next to the predictions.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory of a trained grounding model")
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument(
        "--out", default=None, help="predictions jsonl (default: RUN/preds_<split>.jsonl)"
    )
    parser.add_argument("--checkpoint", default="best", help="best | last | a checkpoint directory")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--device", default=None, help="cpu | cuda | auto (default: the run's train.device)"
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the run's config")


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
