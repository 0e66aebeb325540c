"""CLI commands: each module defines ``add_arguments(parser)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse


def add_run_split_arguments(parser: argparse.ArgumentParser, out_help: str) -> None:
    """The options of commands that run a trained grounding run over one split of its data."""
    parser.add_argument("--run", required=True, help="run directory of a trained grounding model")
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--out", default=None, help=out_help)
    parser.add_argument("--checkpoint", default="best", help="best | last | a checkpoint directory")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--device", default=None, help="cpu | cuda | auto (default: the run's train.device)"
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the run's config")
