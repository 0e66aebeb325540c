"""``sidetune plot --pred preds.jsonl [--gt gt.jsonl] --qid N --out qN.png``.

Draws one query of an official predictions file: the saliency curve over time, the predicted
moments as bars labelled with their scores and, with ``--gt``, the ground-truth windows.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, type=Path, help="official predictions jsonl")
    parser.add_argument("--gt", type=Path, default=None, help="ground-truth annotation jsonl")
    parser.add_argument("--qid", required=True, help="query id to draw")
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default: qid<N>.png)")
    parser.add_argument(
        "--dataset", default="qvhighlights", help="GT dialect: qvhighlights | charades | tacos"
    )
    parser.add_argument(
        "--clip-length",
        type=float,
        default=None,
        help="seconds per saliency score (default: dataset's)",
    )


def _same(a: object, b: str) -> bool:
    return str(a) == b


def run(args: argparse.Namespace) -> int:
    from sidetune.grounding.annotations import CLIP_LENGTH, load_annotations
    from sidetune.grounding.plot import plot_row
    from sidetune.grounding.predictions import PredictionError, read_predictions

    rows = [r for r in read_predictions(args.pred) if _same(r["qid"], args.qid)]
    if not rows:
        raise PredictionError(f"{args.pred}: no prediction row with qid {args.qid}")
    gt = None
    duration = None
    if args.gt is not None:
        ann = load_annotations(args.gt, dataset=args.dataset)
        recs = [r for r in ann.records if _same(r.qid, args.qid)]
        if not recs:
            raise PredictionError(f"{args.gt}: no ground-truth row with qid {args.qid}")
        gt = [(float(s), float(e)) for s, e in recs[0].windows]
        duration = float(recs[0].duration)
    clip_len = args.clip_length or CLIP_LENGTH.get(args.dataset, 2.0)
    out = args.out or Path(f"qid{args.qid}.png")
    plot_row(rows[0], out, clip_len=clip_len, duration=duration, gt=gt)
    print(f"wrote {out}")
    return 0
