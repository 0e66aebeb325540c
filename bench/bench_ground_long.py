"""Grounding a 1-hour video on CPU: seconds and peak memory, by sliding windows.

Two cases, each in a fresh process (so the peak is that process's high-water RSS):

- ``cached``: the video's features are already extracted (a [K=4, 1800, 64] array of 2-s clips,
  the shape the demo's tiny backbone gives); SDST (the ``sdst_rendered`` model, random weights:
  speed does not depend on the values) runs over it in windows of 75 clips, stride 37, and the
  windows are merged (soft-NMS, saliency averaged). Three queries.
- ``tiny``: a rendered 1-hour mp4 (64x64, 4 fps, 14 400 frames) goes through
  ``Grounder.ground`` end to end: streamed decoding, the tiny InternVideo2 backbone, the tiny
  text tower, SDST in windows; then a second query on the same video (features from the
  cache: text encoder + model only).

    python bench/bench_ground_long.py [--threads 1] [--out bench/results/ground_long.json]

Prints a table; writes the JSON atomically.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOUR = 3600.0


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _make_run(root: Path) -> Path:
    import torch

    from sidetune.config import save_config
    from sidetune.engine import save_checkpoint
    from sidetune.grounding.model import build_sdst
    from sidetune.grounding.runs import load_grounding_config

    cfg = load_grounding_config("sdst_rendered", [f"run_dir={root}"])
    save_config(cfg, root / "config.yaml")
    torch.manual_seed(0)
    save_checkpoint(root / "checkpoints" / "last", build_sdst(cfg.model), {"epoch": 0})
    meta = {"backbone": "internvideo2-tiny", "clip_length": 2.0, "frames_per_clip": 4,
            "pool": "mean", "layers": [1, 2, 3, 4], "text_backbone": "internvideo2-text-tiny",
            "text_layers": [0, 1, 2, 3]}  # fmt: skip
    (root / "extract_meta.json").write_text(json.dumps(meta))
    return root


def case_cached(threads: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from sidetune.backbones import create_text_backbone
    from sidetune.grounding.inference import load_grounding_model

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_grounding_model(_make_run(Path(tmp) / "run"))
    video = np.random.default_rng(0).standard_normal((4, 1800, 64)).astype(np.float32)
    text = create_text_backbone("internvideo2-text-tiny")
    enc = text.tokenize(["the red circle moves left"])
    hidden, _ = text.forward_intermediates(enc["input_ids"], enc["attention_mask"], [0, 1, 2, 3])
    query = hidden[:, 0].numpy()
    model.predict(video[:, :200], query, long_video="window")  # warm-up
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        row = model.predict(video, query, duration=HOUR, long_video="window")
        times.append(time.perf_counter() - t0)
    assert len(row["pred_saliency_scores"]) == 1800
    return {"seconds_per_query": min(times), "windows": 48, "peak_rss_mib": _peak_mib()}


def case_render(video: Path) -> dict[str, Any]:
    from sidetune.grounding.render import RenderConfig, layout_video, render_frames, write_mp4

    cfg = RenderConfig(videos=3, min_duration=HOUR, max_duration=HOUR)
    t0 = time.perf_counter()
    write_mp4(video, render_frames(cfg, layout_video(cfg, 0, 0)), cfg.fps)
    return {"render_s": time.perf_counter() - t0}


def case_tiny(threads: int, video: Path) -> dict[str, Any]:
    import torch

    from sidetune.grounding.inference import Grounder

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        grounder = Grounder.from_run(_make_run(root / "run"), cache_dir=root / "cache")
        rss_loaded = _peak_mib()
        t0 = time.perf_counter()
        [r] = grounder.ground(video, "the red circle moves left")
        first = time.perf_counter() - t0
        timings = dict(grounder.last_timings)
        t0 = time.perf_counter()
        grounder.ground(video, "a blue square goes up")
        second = time.perf_counter() - t0
        assert grounder.last_cache_hit and len(r.saliency) == 1800
    return {"first_query_s": first, "first_query_parts": timings, "second_query_s": second,
            "peak_rss_mib": _peak_mib(), "rss_after_loading_mib": rss_loaded}  # fmt: skip


def _child(case: str, threads: int, video: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--case", case, "--threads", str(threads), "--video", str(video)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ground_long.json")
    p.add_argument("--case", choices=["cached", "render", "tiny"], help=argparse.SUPPRESS)
    p.add_argument("--video", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:  # child process: one case, JSON on stdout
        if args.case == "cached":
            res = case_cached(args.threads)
        elif args.case == "render":
            res = case_render(args.video)
        else:
            res = case_tiny(args.threads, args.video)
        print(json.dumps(res))
        return 0
    results: dict[str, Any] = {"machine": platform.processor() or platform.machine(),
                               "threads": args.threads}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "hour.mp4"
        results["cached"] = _child("cached", args.threads, video)
        render = _child("render", args.threads, video)
        results["tiny"] = {**_child("tiny", args.threads, video), **render}
    c, t = results["cached"], results["tiny"]
    print("1-hour video (1800 clips of 2 s), CPU, threads =", args.threads)
    print(f"  cached features, SDST in 48 windows:  {c['seconds_per_query']:.2f} s / query, "
          f"peak RSS {c['peak_rss_mib']:.0f} MiB")  # fmt: skip
    print(f"  tiny backbone from the mp4:  first query {t['first_query_s']:.1f} s "
          f"(video {t['first_query_parts']['video_s']:.1f} s, model {t['first_query_parts']['model_s']:.2f} s), "
          f"second query {t['second_query_s']:.2f} s, peak RSS {t['peak_rss_mib']:.0f} MiB "
          f"(render {t['render_s']:.0f} s, not counted)")  # fmt: skip
    from sidetune.utils.io import write_json

    write_json(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
