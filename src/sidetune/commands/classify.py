"""``sidetune classify --run RUN --video VIDEO [--views 3x2] [--top 5] [key=value ...]``.

Prints the top labels of one video with their probabilities, softmax averaged over the views
(crops x clips) of the run's test protocol.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="trained or imported recognition run")
    parser.add_argument("--video", required=True, help="video file")
    parser.add_argument(
        "--views", default=None, help="CROPSxCLIPS, e.g. 3x2 (default: the run's eval.*)"
    )
    parser.add_argument("--top", type=int, default=5, help="how many labels to print (default 5)")
    parser.add_argument("--checkpoint", default="best", help="best | last (default: best)")
    parser.add_argument("--device", default=None, help="cpu | cuda | auto (default: the run's)")
    parser.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. data.labels=labels.csv"
    )


def run(args: argparse.Namespace) -> int:
    from sidetune.recognition.inference import load_recognition_model, parse_views

    views = parse_views(args.views) if args.views else None
    model = load_recognition_model(args.run, args.checkpoint, args.overrides, args.device)
    rows = model.classify(args.video, views, args.top)
    crops, clips = views or (model.cfg.eval.num_crops, model.cfg.eval.num_clips)
    print(f"{args.video}: {crops} crop(s) x {clips} clip(s), {model.cfg.eval.protocol} views")
    for rank, row in enumerate(rows, start=1):
        print(f"{rank:>2}. {row['prob']:.4f}  {row['name']} ({row['label']})")
    return 0
