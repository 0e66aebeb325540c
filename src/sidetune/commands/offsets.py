"""``sidetune offsets --run DIR --split val [--out offsets.npz] [--raw] [key=value ...]``.

Records, for every query of the split, the attention-weighted offsets ``d = sum_p A_p Delta_p``
of each decoder query, head and refinement level (paper Fig. 4 / Fig. A) of a trained run whose
video attention is RDSA or deformable CA, writes them atomically to an ``.npz`` (default
``DIR/offsets_<split>.npz``, next to the predictions) and prints the mean per level and head.
"""

from __future__ import annotations

import argparse

from sidetune.commands import add_run_split_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--raw", action="store_true", help="also store the per-point offsets and weights"
    )
    add_run_split_arguments(parser, "npz file (default: RUN/offsets_<split>.npz)")


def run(args: argparse.Namespace) -> int:
    from sidetune.grounding.offsets import dump_offsets

    result = dump_offsets(
        args.run,
        split=args.split,
        out=args.out,
        overrides=list(args.overrides),
        checkpoint=args.checkpoint,
        batch_size=args.batch_size,
        device=args.device,
        raw=args.raw,
    )
    print(
        f"wrote offsets of {result['num_rows']} queries to {result['path']} "
        f"(checkpoint {result['checkpoint']})"
    )
    mean = result["mean"]
    print("mean weighted offset (half-widths; -1/+1 = reference boundaries), level x head:")
    print("level " + " ".join(f"{'h' + str(h):>7}" for h in range(mean.shape[1])))
    for level, row in enumerate(mean):
        print(f"{level + 1:>5} " + " ".join(f"{v:7.3f}" for v in row))
    return 0
