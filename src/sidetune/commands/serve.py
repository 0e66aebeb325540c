"""``sidetune serve [--run RUN] [--pred P.jsonl --gt GT.jsonl] [--videos DIR] [--host --port]``.

A local web app with two views: live grounding of typed queries in a video (needs ``--run``)
and a browser of a predictions file against its ground truth. ``--run`` of a ``make demo``
run also finds the demo's val predictions, their GT and its rendered videos. Binds to
127.0.0.1 unless ``--host`` says otherwise (then it warns: the app has no authentication).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sidetune.app.files import parse_size
from sidetune.errors import SidetuneError
from sidetune.grounding.annotations import DATASETS

if TYPE_CHECKING:
    from sidetune.app.server import AppConfig

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run", metavar="DIR", help="trained grounding run: enables live grounding"
    )
    parser.add_argument("--checkpoint", default="best", help="with --run: best | last")
    parser.add_argument("--device", default="cpu", help="with --run: torch device (default cpu)")
    parser.add_argument("--cache-dir", metavar="DIR", help="video feature cache (Grounder default)")
    parser.add_argument("--pred", metavar="PRED.jsonl", help="predictions to browse")
    parser.add_argument("--gt", metavar="GT.jsonl", help="their ground truth")
    parser.add_argument("--dataset", choices=DATASETS, default="qvhighlights")
    parser.add_argument(
        "--videos", metavar="DIR", action="append", default=[], help="videos to pick (repeatable)"
    )
    parser.add_argument(
        "--allow",
        metavar="DIR",
        action="append",
        default=[],
        help="a further directory whose prediction / GT files the page may open (repeatable)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    parser.add_argument(
        "--max-upload", default="2GB", help="largest video upload, e.g. 500MB (default 2GB)"
    )


def _existing_dir(text: str, flag: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise SidetuneError(f"{flag} {text}: not a directory")
    return path


def build_config(args: argparse.Namespace) -> AppConfig:
    """Command line -> :class:`~sidetune.app.server.AppConfig` (loads the run, if any)."""
    from sidetune.app.defaults import run_defaults
    from sidetune.app.server import AppConfig

    if (args.pred is None) != (args.gt is None):
        raise SidetuneError("--pred and --gt go together")
    for flag in ("pred", "gt"):
        value = getattr(args, flag)
        if value is not None and not Path(value).is_file():
            raise SidetuneError(f"--{flag} {value}: no such file")
    config = AppConfig(
        pred=Path(args.pred) if args.pred else None,
        gt=Path(args.gt) if args.gt else None,
        dataset=args.dataset,
        videos=[_existing_dir(v, "--videos") for v in args.videos],
        allow=[_existing_dir(v, "--allow") for v in args.allow],
        max_upload=parse_size(args.max_upload),
    )
    if args.run is not None:
        run = _existing_dir(args.run, "--run")
        if not (run / "config.yaml").is_file():
            raise SidetuneError(f"--run {args.run}: no config.yaml; is it a run directory?")
        from sidetune.grounding.inference import Grounder

        print(f"loading {run} ...", flush=True)
        config.run = run
        try:
            grounder = Grounder.from_run(
                run, checkpoint=args.checkpoint, device=args.device, cache_dir=args.cache_dir
            )
            config.grounder_factory = lambda: grounder
        except SidetuneError as exc:
            # The run's predictions can still be browsed; the page says why live is off.
            config.live_error = f"live grounding is off: {exc}"
            print(f"warning: {config.live_error}", file=sys.stderr)
        found = run_defaults(run)
        if config.pred is None and found.pred is not None and found.gt is not None:
            config.pred, config.gt = found.pred, found.gt
        if not config.videos and found.videos is not None:
            config.videos = [found.videos]
    if config.grounder_factory is None and config.pred is None:
        if config.live_error is not None:
            raise SidetuneError(f"{config.live_error}; and no predictions to browse (--pred --gt)")
        raise SidetuneError(
            "nothing to serve: give --run RUN_DIR and/or --pred P.jsonl --gt GT.jsonl"
        )
    return config


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from sidetune.app.server import create_app

    config = build_config(args)
    if args.host not in LOCAL_HOSTS:
        print(
            f"warning: binding to {args.host}: anyone who can reach this address can use the app "
            "(no authentication) and read the files under its allowed directories",
            file=sys.stderr,
        )
    app = create_app(config)
    if config.pred is not None:
        print(f"prediction browser: {config.pred} against {config.gt} ({config.dataset})")
    if config.grounder_factory is not None:
        print(f"live grounding: {config.run}; videos under {', '.join(map(str, config.videos))}")
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"open http://{host}:{args.port}/  (Ctrl+C stops; uploads are deleted on exit)", flush=True
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
