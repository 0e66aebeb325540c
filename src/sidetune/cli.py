"""``sidetune <command>``: one entry point; each command lives in ``sidetune.commands.<name>``.

Only the chosen command's module is imported, so ``sidetune evaluate`` does not pay for torch
model code it never runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sidetune import __version__
from sidetune.errors import SidetuneError

# command -> (module, one-line help). Each module defines add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": (
        "sidetune.commands.evaluate",
        "score a predictions jsonl against ground truth (official QVHighlights metrics)",
    ),
    "train": (
        "sidetune.commands.train",
        "train a model from a YAML config with key=value overrides",
    ),
    "predict": ("sidetune.commands.predict", "write predictions of a trained grounding run"),
    "offsets": (
        "sidetune.commands.offsets",
        "dump the weighted deformable offsets of a trained grounding run (Fig. 4)",
    ),
    "info": ("sidetune.commands.info", "per-module parameter table of a config's model"),
    "synth": (
        "sidetune.commands.synth",
        "generate an embedded synthetic benchmark (grounding | recognition)",
    ),
    "extract": (
        "sidetune.commands.extract",
        "extract K intermediate-layer features from raw videos with a frozen backbone",
    ),
}


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidetune", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--version", action="version", version=f"sidetune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SidetuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
