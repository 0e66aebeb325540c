"""``sidetune train CONFIG [key=value ...] [--resume]``: dispatch to the config's task recipe."""

from __future__ import annotations

import argparse
import importlib

from sidetune.config import config_task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config path or built-in name (e.g. sdst_synthetic)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=5")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in run_dir from its last checkpoint"
    )


def run(args: argparse.Namespace) -> int:
    task = config_task(args.config)
    recipe = importlib.import_module(f"sidetune.{task}.recipe")
    return int(recipe.train(args.config, list(args.overrides), resume=args.resume) or 0)
