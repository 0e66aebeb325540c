"""``sidetune info CONFIG [key=value ...]``: per-module parameter table of the config's model."""

from __future__ import annotations

import argparse
import importlib

from sidetune.config import config_task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config path or built-in name")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    parser.add_argument("--depth", type=int, default=2, help="module nesting depth of the table")


def run(args: argparse.Namespace) -> int:
    task = config_task(args.config)
    recipe = importlib.import_module(f"sidetune.{task}.recipe")
    return int(recipe.info(args.config, list(args.overrides), depth=args.depth) or 0)
