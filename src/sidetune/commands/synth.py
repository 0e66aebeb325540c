"""``sidetune synth grounding|recognition --out DIR ...``: embedded synthetic benchmarks."""

from __future__ import annotations

import argparse
import importlib

_TASKS = {
    "grounding": "sidetune.grounding.synthetic",
    "recognition": "sidetune.recognition.synthetic",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="synth_task", metavar="TASK", required=True)
    for task, module in _TASKS.items():
        p = sub.add_parser(task, help=f"synthetic {task} benchmark")
        # Each generator owns its options; imported only when building the parser for `synth`.
        importlib.import_module(module).add_arguments(p)


def run(args: argparse.Namespace) -> int:
    return int(importlib.import_module(_TASKS[args.synth_task]).run(args) or 0)
