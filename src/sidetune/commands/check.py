"""``sidetune check CONFIG [key=value ...]``: scan a config's data before training on it.

Grounding: every annotation row and every feature file (existence, readability, rank, dtype,
NaN / Inf, layers and dimensions against ``model.*``, feature timeline against durations and
windows). Recognition: the video lists and labels, and every listed video (opened and the
frames a test pass samples decoded; frame folders: the sampled frames read). Prints counts
and the first problems; exit status 1 when there is any.
"""

from __future__ import annotations

import argparse

from sidetune.config import config_task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config path or built-in name (e.g. sdst_synthetic)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, as for train")
    parser.add_argument("--show", type=int, default=10, help="problems to list (default 10)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    task = config_task(args.config)
    if task == "grounding":
        from sidetune.grounding.check import check_grounding
        from sidetune.grounding.runs import load_grounding_config

        report = check_grounding(
            load_grounding_config(args.config, list(args.overrides)),
            progress=not args.no_progress,
        )
    else:
        from sidetune.recognition.check import check_recognition
        from sidetune.recognition.recipe import load_recognition_config

        report = check_recognition(
            load_recognition_config(args.config, list(args.overrides)),
            progress=not args.no_progress,
        )
    print(report.format(show=args.show))
    return 0 if report.ok else 1
