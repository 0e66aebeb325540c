"""``sidetune extract``: K intermediate-layer features from raw videos with a frozen backbone.

Example (InternVideo2-1B on QVHighlights, the SDST setup)::

    sidetune extract --backbone internvideo2-1b --checkpoint InternVideo2-stage2_1b-224p-f4.pt \\
        --tokenizer bert-large-uncased/ --videos videos/ \\
        --annotations highlight_train_release.jsonl highlight_val_release.jsonl \\
        --dataset qvhighlights --layers 37,38,39,40 --pool adaptive --out features/iv2_1b

writes ``OUT/video_features/{vid}.npz`` ([K, T, 768]) and ``OUT/text_features/qid{qid}.npz``
([K, L, 1024]). Re-running skips finished files (and loads no backbone when nothing is left);
unreadable videos are listed at the end and in ``OUT/extract_failures.json`` (exit status 1
when any video failed).

Defaults follow the official InternVideo2 pipeline: whole frame resized to 224x224 (bicubic,
``--transform eval``), text ``[CLS] X`` padded to 40 tokens. ``--gelu tanh --pre-text --bf16``
reproduces the official retrieval eval; ``--transform demo`` (and the default erf GELU) the
demo. Many GPUs / nodes: the same command under ``torchrun --nproc_per_node N [--nnodes M ...]
-m sidetune.cli extract ...``; each rank takes its share of videos and queries.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from sidetune.errors import SidetuneError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sidetune.backbones import BACKBONE_NAMES, GELU_CHOICES, POOLS

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
    parser.add_argument(
        "--transform",
        choices=("eval", "demo", "crop"),
        default=None,
        help="frame preprocessing: eval = whole frame to 224x224 bicubic (official eval; "
        "InternVideo2 default), demo = the official demo's bilinear resize, crop = shorter side "
        "+ centre crop (CLIP default)",
    )
    parser.add_argument(
        "--gelu",
        choices=GELU_CHOICES,
        default=None,
        help="InternVideo2 MLP activation: erf (default; the official demo, fp32) or tanh "
        "(the official fused MLP of training and retrieval eval)",
    )
    parser.add_argument(
        "--checkpoint-frames",
        type=int,
        default=None,
        help="frames the checkpoint's pos_embed was trained for (official origin_num_frames; "
        "default 4, the stage-2 releases)",
    )
    parser.add_argument(
        "--text-sep",
        action="store_true",
        help="tokenise as [CLS] X [SEP] (Hugging Face) instead of the official [CLS] X",
    )
    parser.add_argument(
        "--pre-text",
        action="store_true",
        help="apply the official caption normalisation (lower-case, strip punctuation, - and / "
        "to spaces), as the retrieval eval does; the demo does not",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding processes per rank (default: 0 = a background thread on CPU, "
        "min(8, CPUs per rank) on GPU)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="clips per forward pass")
    parser.add_argument("--text-batch-size", type=int, default=64, help="queries per forward pass")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on GPU")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="bf16 backbone weights, as the official retrieval eval (use_bf16); default fp32 "
        "weights (under bf16 autocast on GPU)",
    )
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


def _default_workers(device: str, world_size: int) -> int:
    import torch

    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return min(8, max(1, (os.cpu_count() or 1) // world_size)) if on_gpu else 0


def run(args: argparse.Namespace) -> int:
    import torch

    from sidetune.backbones import create_backbone, create_text_backbone, parse_layers
    from sidetune.engine.distributed import all_gather_object, cleanup, init_distributed
    from sidetune.features.extract import ExtractConfig, ExtractError, run_extraction

    is_iv2 = args.backbone.startswith("internvideo2")
    if args.checkpoint is None and not args.backbone.endswith("-tiny") and not args.random_weights:
        raise ExtractError(
            f"--backbone {args.backbone} needs --checkpoint (a local weights path); pass --random-weights to time random weights"
        )
    if args.batch_size < 1 or args.text_batch_size < 1:
        raise ExtractError("--batch-size and --text-batch-size must be >= 1")
    if args.frames_per_clip is not None and args.frames_per_clip < 1:
        raise ExtractError("--frames-per-clip must be >= 1")
    if args.checkpoint_frames is not None and args.checkpoint_frames < 1:
        raise ExtractError("--checkpoint-frames must be >= 1")
    if args.workers is not None and args.workers < 0:
        raise ExtractError("--workers must be >= 0")
    if not is_iv2 and (args.gelu or args.checkpoint_frames or args.text_sep or args.pre_text):
        raise ExtractError(
            "--gelu, --checkpoint-frames, --text-sep and --pre-text are InternVideo2 options"
        )
    want_video = not args.no_video
    want_text = not args.no_text and bool(args.annotations)
    if want_video and args.videos is None:
        raise ExtractError("--videos DIR is required (or pass --no-video)")

    env = init_distributed(args.device)
    workers = args.workers
    if workers is None:
        workers = _default_workers(args.device, env.world_size)
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
        progress=not args.no_progress and env.is_main,
        backbone=args.backbone,
        transform=args.transform,
        gelu=args.gelu if is_iv2 else None,
        bf16=args.bf16,
        add_sep=args.text_sep,
        pre_text=args.pre_text,
        workers=workers,
        rank=env.rank,
        world_size=env.world_size,
    )

    dtype = torch.bfloat16 if args.bf16 else None

    def build_video() -> Any:
        options: dict[str, Any] = {}
        if is_iv2:
            options["gelu"] = args.gelu
            if args.checkpoint_frames is not None:
                options["checkpoint_frames"] = args.checkpoint_frames
        backbone = create_backbone(
            args.backbone,
            checkpoint=args.checkpoint,
            frames_per_clip=args.frames_per_clip,
            strict=not args.non_strict,
            dtype=dtype,
            **options,
        )
        report = getattr(backbone, "load_report", None)
        if report is not None and env.is_main:
            print(f"backbone: {report.summary()}", file=sys.stderr)
        return backbone

    def build_text() -> Any:
        text = create_text_backbone(
            args.backbone,
            checkpoint=args.text_checkpoint or args.checkpoint,
            tokenizer=args.tokenizer,
            strict=not args.non_strict,
            add_sep=args.text_sep,
            normalize_text=args.pre_text,
            dtype=dtype,
        )
        report = getattr(text, "load_report", None)
        if report is not None and env.is_main:
            print(f"text: {report.summary()}", file=sys.stderr)
        return text

    gather = (lambda obj: all_gather_object(env, obj)) if env.distributed else None
    try:
        summary = run_extraction(
            cfg,
            build_video if want_video else None,
            build_text if want_text else None,
            gather=gather,
        )
    except OSError as exc:  # disk full, permissions: say which path
        raise SidetuneError(
            f"{getattr(exc, 'filename', None) or args.out}: {exc.strerror or exc}"
        ) from exc
    finally:
        cleanup(env)
    prefix = f"[rank {env.rank}/{env.world_size}] " if env.distributed else ""
    for line in summary.lines():
        print(prefix + line)
    return 1 if summary.all_failed else 0
