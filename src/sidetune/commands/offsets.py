"""``sidetune offsets --run DIR --split val [--out offsets.npz] [--raw] [key=value ...]``.

Records, for every query of the split, the attention-weighted offsets ``d = sum_p A_p Delta_p``
of each decoder query, head and refinement level (paper Fig. 4 / Fig. A) of a trained run whose
video attention is RDSA or deformable CA, writes them atomically to an ``.npz`` (default
``DIR/offsets_<split>.npz``, next to the predictions) and prints the mean per level and head.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory of a trained grounding model")
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--out", default=None, help="npz file (default: RUN/offsets_<split>.npz)")
    parser.add_argument("--checkpoint", default="best", help="best | last | a checkpoint directory")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--device", default=None, help="cpu | cuda | auto (default: the run's train.device)"
    )
    parser.add_argument(
        "--raw", action="store_true", help="also store the per-point offsets and weights"
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the run's config")


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
