"""``sidetune import tds-clip CHECKPOINT.pt [key=value ...] --config NAME --out RUN_DIR``.

Turns a checkpoint of the authors' public TDS-CLIP code (``train_vision.py``'s
``{"epoch", "model_state_dict", "optimizer_state_dict"}``, frozen CLIP included) into a run
directory that ``sidetune evaluate --run``, ``sidetune classify`` and
``load_recognition_model`` use directly. Only tensors are read.
"""

from __future__ import annotations

import argparse

FORMATS = ("tds-clip",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "format", choices=FORMATS, help="whose checkpoint: tds-clip (BBYL9413/TDS-CLIP)"
    )
    parser.add_argument("checkpoint", help="the authors' checkpoint file (.pt / .pth)")
    parser.add_argument(
        "--config", required=True, help="recognition config (name or YAML) the run is built from"
    )
    parser.add_argument("--out", required=True, help="run directory to write")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the config")


def run(args: argparse.Namespace) -> int:
    from sidetune.interop.tds_clip import import_tds_run

    out = import_tds_run(args.checkpoint, args.config, args.out, list(args.overrides))
    print(f"imported {args.checkpoint} -> {out} (frozen CLIP in {out / 'clip'})")
    print(f"evaluate: sidetune evaluate --run {out} data.val=LIST data.root=DIR")
    return 0
