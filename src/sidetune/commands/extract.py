"""``sidetune extract``: K intermediate-layer features from raw videos with a frozen backbone.

Example (InternVideo2-1B on QVHighlights, the SDST setup)::

    sidetune extract --backbone internvideo2-1b --checkpoint InternVideo2-stage2_1b-224p-f4.pt \\
        --tokenizer bert-large-uncased/ --videos videos/ \\
        --annotations highlight_train_release.jsonl highlight_val_release.jsonl \\
        --dataset qvhighlights --layers 37,38,39,40 --pool adaptive --out features/iv2_1b

writes ``OUT/video_features/{vid}.npz`` ([K, T, 768]) and ``OUT/text_features/qid{qid}.npz``
([K, L, 1024]). Re-running skips finished files; unreadable videos are listed at the end and
in ``OUT/extract_failures.json`` (exit status 1 when any video failed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sidetune.errors import SidetuneError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sidetune.backbones import BACKBONE_NAMES, POOLS

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n", 2)[2] if __doc__ else None
    parser.add_argument(
        "--backbone", required=True, choices=BACKBONE_NAMES, help="frozen video backbone"
    )
    parser.add_argument(
        "--checkpoint",
        help="local weights: InternVideo2 .pt/.pth/.safetensors, CLIP: a Hugging Face directory",
    )
    parser.add_argument(
        "--videos", type=Path, help="directory of raw videos named {vid}.mp4|webm|mkv|..."
    )
    parser.add_argument(
        "--annotations",
        type=Path,
        nargs="+",
        default=[],
        help="jsonl file(s) with qid / vid / query",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--layers",
        default=None,
        help="video layers: '37,38,39,40', '-4,-3,-2,-1' or 'last4' (default: last4; 1-based, 0 = embeddings)",
    )
    parser.add_argument(
        "--text-layers",
        default=None,
        help="text layers (default: the last K text layers, K = number of video layers)",
    )
    parser.add_argument(
        "--pool",
        default="adaptive",
        choices=POOLS,
        help="token pooling per layer (default: adaptive = the frozen final pool re-used, SDST Eq. 15)",
    )
    parser.add_argument(
        "--dataset", default=None, help="qvhighlights | tacos (2-s clips) | charades (1-s clips)"
    )
    parser.add_argument(
        "--clip-length", type=float, default=None, help="seconds per clip (overrides --dataset)"
    )
    parser.add_argument(
        "--frames-per-clip",
        type=int,
        default=None,
        help="frames sampled uniformly per clip (InternVideo2 default 4)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="clips per forward pass")
    parser.add_argument("--text-batch-size", type=int, default=64, help="queries per forward pass")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on GPU")
    parser.add_argument(
        "--text-checkpoint",
        default=None,
        help="text tower weights (default: --checkpoint; the stage-2 file holds both)",
    )
    parser.add_argument(
        "--tokenizer",
        default=None,
        help="local tokenizer directory (BERT vocab.txt; CLIP: default the checkpoint dir)",
    )
    parser.add_argument(
        "--project-text",
        action="store_true",
        help="apply the frozen text projection to every token",
    )
    parser.add_argument("--no-video", action="store_true", help="skip video features")
    parser.add_argument("--no-text", action="store_true", help="skip text features")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="recompute existing files (and allow changed settings)",
    )
    parser.add_argument(
        "--non-strict",
        action="store_true",
        help="load checkpoints with missing / unexpected keys (reported, not an error)",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="allow running without --checkpoint (speed tests only)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from sidetune.backbones import create_backbone, create_text_backbone, parse_layers
    from sidetune.features.extract import ExtractConfig, ExtractError, run_extraction

    if args.checkpoint is None and not args.backbone.endswith("-tiny") and not args.random_weights:
        raise ExtractError(
            f"--backbone {args.backbone} needs --checkpoint (a local weights path); pass --random-weights to time random weights"
        )
    if args.batch_size < 1 or args.text_batch_size < 1:
        raise ExtractError("--batch-size and --text-batch-size must be >= 1")
    if args.frames_per_clip is not None and args.frames_per_clip < 1:
        raise ExtractError("--frames-per-clip must be >= 1")
    want_video = not args.no_video
    want_text = not args.no_text and bool(args.annotations)
    if want_video and args.videos is None:
        raise ExtractError("--videos DIR is required (or pass --no-video)")

    cfg = ExtractConfig(
        out=args.out,
        videos=args.videos,
        annotations=list(args.annotations),
        layers=parse_layers(args.layers),
        text_layers=parse_layers(args.text_layers),
        pool=args.pool,
        dataset=args.dataset,
        clip_length=args.clip_length,
        frames_per_clip=args.frames_per_clip,
        batch_size=args.batch_size,
        text_batch_size=args.text_batch_size,
        device=args.device,
        amp=not args.no_amp,
        video=want_video,
        text=want_text,
        project_text=args.project_text,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    backbone = None
    if want_video:
        backbone = create_backbone(
            args.backbone,
            checkpoint=args.checkpoint,
            frames_per_clip=args.frames_per_clip,
            strict=not args.non_strict,
        )
        report = getattr(backbone, "load_report", None)
        if report is not None:
            print(f"backbone: {report.summary()}", file=sys.stderr)
    text_backbone = None
    if want_text:
        text_ckpt = args.text_checkpoint or args.checkpoint
        text_backbone = create_text_backbone(
            args.backbone,
            checkpoint=text_ckpt,
            tokenizer=args.tokenizer,
            strict=not args.non_strict,
        )
        report = getattr(text_backbone, "load_report", None)
        if report is not None:
            print(f"text: {report.summary()}", file=sys.stderr)
    try:
        summary = run_extraction(cfg, backbone, text_backbone)
    except OSError as exc:  # disk full, permissions: say which path
        raise SidetuneError(
            f"{getattr(exc, 'filename', None) or args.out}: {exc.strerror or exc}"
        ) from exc
    for line in summary.lines():
        print(line)
    return 1 if summary.videos_failed else 0
