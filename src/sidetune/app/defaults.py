"""The embedded default: what ``sidetune serve --run demo_out/run`` finds next to a demo run.

``make demo`` writes ``DIR/run`` (the run), ``DIR/preds_val.jsonl`` (val predictions), their
ground truth (the run's ``data.val``, e.g. ``DIR/synthetic/val.jsonl``) and, when rendered,
mp4 videos (``videos/`` beside a rendered set's jsonl files, or ``DIR/rendered``). Any of these
found is used unless the command line names its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass
class RunDefaults:
    pred: Path | None = None
    gt: Path | None = None
    videos: Path | None = None


def _config_val(run: Path) -> Path | None:
    """``data.val`` of the run's config, tried as given and relative to the demo folder."""
    try:
        cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
        val = (cfg.get("data") or {}).get("val")
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    if not isinstance(val, str):
        return None
    for candidate in (Path(val), run.parent / val, run / val):
        if candidate.is_file():
            return candidate.resolve()
    return None


def run_defaults(run: Path) -> RunDefaults:
    """Prediction file, its GT and a video folder that belong to a (demo) run directory."""
    demo = run.parent
    out = RunDefaults()
    for pred in (run / "preds_val.jsonl", demo / "preds_val.jsonl"):
        if pred.is_file():
            out.pred = pred.resolve()
            break
    if out.pred is not None:
        out.gt = _config_val(run)
        if out.gt is None and (demo / "synthetic" / "val.jsonl").is_file():
            out.gt = (demo / "synthetic" / "val.jsonl").resolve()
    # The rendered benchmark keeps its videos in ``videos/`` beside its jsonl files.
    beside_gt = [out.gt.parent / "videos"] if out.gt is not None else []
    for videos in (*beside_gt, demo / "rendered", run / "rendered", demo / "videos"):
        if videos.is_dir():
            out.videos = videos.resolve()
            break
    return out
