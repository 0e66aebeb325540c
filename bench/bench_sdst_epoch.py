"""SDST epoch benchmark: does data loading keep up with the training step?

Writes a ``sdst_qvhighlights``-shaped synthetic set in the public feature layout (``{vid}.npz``
key ``features`` ``[K=4, T=75, 768]`` float16, ``qid{qid}.npz`` key ``last_hidden_state``
``[K=4, L, 1024]`` float16 with a CLS token, 7,218 training queries on about 1.43 queries per
video like QVHighlights train), then times, with the ``sdst_qvhighlights`` model:

1. ``step_s``: the median training step on one batch that stays in memory (no data loading);
2. ``epoch_s``: the same steps fed by the real pipeline (``GroundingDataset`` reading the
   files, ``collate_grounding``, a ``DataLoader`` with worker processes / pinned memory /
   prefetch as ``sidetune train`` builds it), from the first ``next()`` to the last step.

and reports ``epoch_over_steps = epoch_s / (steps * step_s)`` (goal: <= 1.15). An epoch of
7,218 queries is 226 steps, so ``--fraction`` runs the first part of a shuffled epoch (the
data of that part is all that is written). Features are written once into ``--data-dir``
(kept between runs; delete it to free the disk).

    python bench/bench_sdst_epoch.py --fraction 0.1 --workers 0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from sidetune.engine import TrainConfig, build_optimizer, param_groups, resolve_device
from sidetune.engine.trainer import move_to
from sidetune.features.store import save_text_features, save_video_features
from sidetune.grounding.annotations import GroundingRecord
from sidetune.grounding.data import DataConfig, GroundingDataset, collate_grounding
from sidetune.grounding.losses import LossConfig, SDSTCriterion
from sidetune.grounding.model import build_sdst, qvhighlights_config
from sidetune.utils.io import write_json

RESULTS = Path(__file__).resolve().parent / "results" / "sdst_epoch.json"
QVH_TRAIN_QUERIES = 7218
QUERIES_PER_VIDEO = 1.43  # QVHighlights train: 7,218 queries on 5,048 videos


def make_records(num_queries: int, seed: int = 0) -> list[GroundingRecord]:
    """QVHighlights-like rows: 150 s videos of 75 two-second clips, 1-3 windows each with
    annotator scores on their clips."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(num_queries):
        windows = []
        for _ in range(int(rng.integers(1, 4))):
            start = 2 * int(rng.integers(0, 70))
            windows.append((float(start), float(min(150, start + 2 * int(rng.integers(1, 12))))))
        clips = sorted({c for s, e in windows for c in range(int(s) // 2, int(e) // 2)})
        scores = tuple(tuple(int(x) for x in rng.integers(0, 5, 3)) for _ in clips)
        rows.append(
            GroundingRecord(
                qid=q,
                vid=f"v{int(q / QUERIES_PER_VIDEO)}",
                query="synthetic query",
                duration=150.0,
                windows=tuple(windows),
                relevant_clip_ids=tuple(clips),
                saliency_scores=scores,
            )
        )
    return rows


def write_features(
    root: Path, records: list[GroundingRecord], args: argparse.Namespace
) -> tuple[Path, Path]:
    """Write the records' feature files (those not there yet) in the public layout."""
    video_dir, text_dir = root / "video", root / "text"
    video_dir.mkdir(parents=True, exist_ok=True)
    text_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for rec in records:
        vpath = video_dir / f"{rec.vid}.npz"
        if not vpath.exists():
            shape = (args.levels, args.clips, args.video_dim)
            save_video_features(video_dir, rec.vid, rng.standard_normal(shape, np.float32))
        tpath = text_dir / f"qid{rec.qid}.npz"
        if not tpath.exists():
            length = int(rng.integers(8, args.tokens + 1))
            shape = (args.levels, length, args.text_dim)
            save_text_features(text_dir, rec.qid, rng.standard_normal(shape, np.float32))
    return video_dir, text_dir


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--fraction", type=float, default=0.1, help="part of an epoch to run")
    p.add_argument("--queries", type=int, default=QVH_TRAIN_QUERIES, help="queries per epoch")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--prefetch", type=int, default=2, help="batches prefetched per worker")
    p.add_argument("--cache", action="store_true", help="data.cache_features (in-memory)")
    p.add_argument("--step-samples", type=int, default=5, help="steps timed on a fixed batch")
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--clips", type=int, default=75)
    p.add_argument("--tokens", type=int, default=32, help="longest query (with CLS)")
    p.add_argument("--video-dim", type=int, default=768)
    p.add_argument("--text-dim", type=int, default=1024)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--data-dir", type=Path, default=None, help="default: a temp dir")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def run_epoch_bench(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    steps = max(1, math.floor(args.queries * args.fraction / args.batch_size))
    records = make_records(steps * args.batch_size)
    root = args.data_dir or Path(tempfile.gettempdir()) / "sidetune_bench_epoch"
    t0 = time.perf_counter()
    video_dir, text_dir = write_features(root, records, args)
    write_s = time.perf_counter() - t0

    torch.manual_seed(0)
    model_cfg = qvhighlights_config(text_dim=args.text_dim, video_dim=args.video_dim)
    model = build_sdst(model_cfg).to(device).train()
    criterion = SDSTCriterion(LossConfig())
    train_cfg = TrainConfig(num_workers=args.workers)
    optimizer = build_optimizer(param_groups(model, train_cfg), train_cfg, fused=True)
    params = [q for g in optimizer.param_groups for q in g["params"]]
    data_cfg = DataConfig(
        video_features=str(video_dir),
        text_features=str(text_dir),
        clip_length=2.0,
        cache_features=args.cache,
    )
    dataset = GroundingDataset(data_cfg, "train", records=records)

    def step(batch: dict[str, Any]) -> torch.Tensor:
        inputs = [batch[k] for k in ("video_feats", "video_mask", "text_feats", "text_mask")]
        loss = criterion(model(*inputs), batch["targets"])["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, train_cfg.clip_grad_norm)
        optimizer.step()
        return loss.detach()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    # 0. data alone: read + collate in this process (what one worker does per batch).
    t = time.perf_counter()
    n_data = min(steps, 5)
    for i in range(n_data):
        collate_grounding(
            [dataset[j] for j in range(i * args.batch_size, (i + 1) * args.batch_size)]
        )
    data_s = (time.perf_counter() - t) / n_data

    # 1. step time on a batch already in memory (the first batch of the epoch's order).
    fixed = move_to(collate_grounding([dataset[i] for i in range(args.batch_size)]), device)
    step(fixed)
    step(fixed)
    times = []
    for _ in range(args.step_samples):
        sync()
        t = time.perf_counter()
        step(fixed)
        sync()
        times.append(time.perf_counter() - t)
    step_s = statistics.median(times)

    # 2. the same number of steps fed by the real pipeline, worker start-up included.
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        collate_fn=collate_grounding,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=args.prefetch if args.workers > 0 else None,
        drop_last=True,
        generator=torch.Generator().manual_seed(0),
    )
    sync()
    t = time.perf_counter()
    done = 0
    last = torch.zeros(())
    for batch in loader:
        last = step(move_to(batch, device))
        done += 1
    float(last)
    sync()
    epoch_s = time.perf_counter() - t
    result = {
        "benchmark": "sdst_epoch",
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "queries_per_epoch": args.queries,
        "fraction": args.fraction,
        "steps": done,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "prefetch": args.prefetch,
        "cache_features": args.cache,
        "step_s": round(step_s, 4),
        "epoch_s": round(epoch_s, 3),
        "steps_x_step_s": round(done * step_s, 3),
        "data_s_per_batch": round(data_s, 4),
        "epoch_over_steps": round(epoch_s / (done * step_s), 3),
        "feature_write_s": round(write_s, 2),
    }
    write_json(args.out, result)
    return result


def main(argv: list[str] | None = None) -> int:
    result = run_epoch_bench(argv)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
