"""``sidetune ground --run RUN --video VIDEO --query "..." [--query ...] [--out r.json] [--plot r.png]``.

Decodes the video, extracts the features the run was trained on (the run's recorded backbone,
layers, pooling, clip length and text settings; ``--backbone`` etc. override them), runs the
model over the whole video (sliding windows of the trained length when it is longer), and
prints the top moments (start-end in seconds, score) and the highlight clips of each query.
Video features are cached per file content + settings (``--cache-dir``), so a second query on
the same video costs only the text encoder and the model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run directory of a trained grounding model")
    parser.add_argument("--video", required=True, type=Path, help="video file (mp4, webm, ...)")
    parser.add_argument(
        "--query", action="append", required=True, help="a sentence to ground (repeatable)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG (one panel per query)")
    parser.add_argument(
        "--gt", nargs=2, type=float, action="append", metavar=("START", "END"),
        help="a ground-truth window in seconds, drawn on the plot (repeatable)",
    )  # fmt: skip
    parser.add_argument("--top", type=int, default=5, help="moments and highlight clips printed")
    parser.add_argument(
        "--run-checkpoint", default="best", help="best | last | a checkpoint directory of the run"
    )
    parser.add_argument("--backbone", default=None, help="video backbone (default: the run's)")
    parser.add_argument("--checkpoint", default=None, help="the backbone's local weights")
    parser.add_argument("--text-checkpoint", default=None, help="the text tower's weights")
    parser.add_argument("--tokenizer", default=None, help="local tokenizer directory")
    parser.add_argument("--layers", default=None, help="video layers (default: the run's)")
    parser.add_argument("--text-layers", default=None, help="text layers (default: the run's)")
    parser.add_argument("--pool", default=None, help="adaptive | cls | mean (default: the run's)")
    parser.add_argument("--clip-length", type=float, default=None, help="seconds per clip")
    parser.add_argument("--frames-per-clip", type=int, default=None)
    parser.add_argument("--stride", type=int, default=None, help="window stride in clips")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument(
        "--cache-dir", default=None, help="video feature cache (default ~/.cache/sidetune)"
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from sidetune.backbones import parse_layers

    return {
        "backbone": args.backbone,
        "backbone_checkpoint": args.checkpoint,
        "text_checkpoint": args.text_checkpoint,
        "tokenizer": args.tokenizer,
        "layers": parse_layers(args.layers),
        "text_layers": parse_layers(args.text_layers),
        "pool": args.pool,
        "clip_length": args.clip_length,
        "frames_per_clip": args.frames_per_clip,
    }


def _progress(stage: str, fraction: float) -> None:
    if sys.stderr.isatty():
        end = "\n" if fraction >= 1.0 else "\r"
        print(f"{stage}: {100 * fraction:5.1f}%", end=end, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from sidetune.grounding.grounder import Grounder, GroundError
    from sidetune.utils.io import write_json

    if args.top < 1:
        raise GroundError("--top must be >= 1")
    if args.stride is not None and args.stride < 1:
        raise GroundError("--stride must be >= 1 clip")
    grounder = Grounder.from_run(
        args.run, checkpoint=args.run_checkpoint, device=args.device, cache_dir=args.cache_dir,
        **_overrides(args),
    )  # fmt: skip
    grounder.stride = args.stride
    results = grounder.ground(args.video, list(args.query), progress=_progress)
    first = results[0]
    cached = " (features from the cache)" if grounder.last_cache_hit else ""
    print(f"{args.video}: {first.duration:.1f} s, {len(first.saliency)} clips of "
          f"{first.clip_len:g} s{cached}")  # fmt: skip
    for r in results:
        print(f"\nquery: {r.query}")
        print("  top moments (start - end s, score):")
        for i, m in enumerate(r.moments[: args.top], start=1):
            print(f"    {i}. {m.start:8.1f} - {m.end:8.1f}   {m.score:.3f}")
        if not r.moments:
            print("    (none)")
        clips = ", ".join(f"{s:.0f}-{e:.0f} s ({v:.2f})" for s, e, v in r.highlights(args.top))
        print(f"  highlight clips: {clips}")
    t = grounder.last_timings
    print(
        f"\ntime: video {t['video_s']:.2f} s, text {t['text_s']:.2f} s, model {t['model_s']:.2f} s"
    )
    if args.out is not None:
        write_json(args.out, {
            "video": str(args.video), "run": str(args.run), "settings": grounder.describe(),
            "results": [r.to_dict() for r in results],
        })  # fmt: skip
        print(f"wrote {args.out}")
    if args.plot is not None:
        from sidetune.grounding.plot import plot_results

        gt = [tuple(w) for w in args.gt] if args.gt else None
        plot_results(results, args.plot, gt=gt, title=args.video.name)
        print(f"wrote {args.plot}")
    return 0
