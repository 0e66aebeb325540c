"""TDS-CLIP with and without its adapters on the embedded synthetic motion benchmark.

Variants (paper Table 3):
  full      TD-Adapter + SME-Adapter (n=5 local frames)
  no_td     model.td_adapter=false (the temporal branch keeps its depthwise temporal conv)
  no_sme    model.num_local_frames=1 (only the centre frame; no frame differences)
  neither   both off

One synthetic set (``sidetune synth recognition``) is shared by every run; each seed changes
the side network's initialisation and the data order (the frozen random CLIP is fixed by
``model.random_backbone_seed``). Reported: val top-1 of the last epoch (single view), so no
checkpoint is picked on the split it is scored on. Per-run results land in
``OUT/results/{variant}_s{seed}.json`` (an interrupted sweep resumes), the summary in
``OUT/summary.json``.

    python bench/recognition_ablations.py --out runs/rec_ablations --seeds 0 1 2 --workers 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

VARIANTS: dict[str, list[str]] = {
    "full": [],
    "no_td": ["model.td_adapter=false"],
    "no_sme": ["model.num_local_frames=1"],
    "neither": ["model.td_adapter=false", "model.num_local_frames=1"],
}


def _run_one(out: Path, variant: str, seed: int, extra: Sequence[str]) -> dict[str, Any]:
    import contextlib
    import io

    import torch

    from sidetune.recognition.recipe import train
    from sidetune.utils.io import write_json

    torch.set_num_threads(1)
    run_dir = out / "runs" / f"{variant}_s{seed}"
    overrides = [
        f"data.root={out / 'data'}",
        f"run_dir={run_dir}",
        f"train.seed={seed}",
        *extra,
        *VARIANTS[variant],
    ]
    shutil.rmtree(run_dir, ignore_errors=True)  # a run cut short earlier restarts clean
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        train("tds_clip_synthetic", overrides)
    meta = json.loads((run_dir / "checkpoints" / "last" / "meta.json").read_text())
    row = {
        "variant": variant,
        "seed": seed,
        "epoch": meta["epoch"],
        "top1": meta["metrics"]["top1"],
        "top5": meta["metrics"]["top5"],
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(out / "results" / f"{variant}_s{seed}.json", row)
    return row


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--out", type=Path, default=Path("runs/rec_ablations"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides")
    p.add_argument("--workers", type=int, default=2, help="runs in parallel (1 thread each)")
    args = p.parse_args(argv)

    from sidetune.recognition.synthetic import generate
    from sidetune.utils.io import write_json

    out: Path = args.out
    if not (out / "data" / "labels.csv").exists():
        generate(out / "data")
    todo = [
        (v, s)
        for s in args.seeds
        for v in args.variants
        if not (out / "results" / f"{v}_s{s}.json").exists()
    ]
    print(f"{len(todo)} runs to do ({args.workers} at a time)", flush=True)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(_run_one, out, v, s, args.set) for v, s in todo]
        for fut in futures:
            r = fut.result()
            print(
                f"{r['variant']:>8} seed {r['seed']}: top-1 {r['top1']:.1f} ({r['train_seconds']:.0f}s)"
            )
    rows = [
        json.loads((out / "results" / f"{v}_s{s}.json").read_text())
        for s in args.seeds
        for v in args.variants
    ]
    lines = ["| variant | val top-1 per seed | mean ± std |", "|---|---|---|"]
    summary = {}
    for v in args.variants:
        top1 = [r["top1"] for r in rows if r["variant"] == v]
        mean, std = statistics.fmean(top1), statistics.pstdev(top1)
        summary[v] = {"top1": top1, "mean": mean, "std": std}
        lines.append(f"| {v} | {' / '.join(f'{t:.1f}' for t in top1)} | {mean:.1f} ± {std:.1f} |")
    write_json(out / "summary.json", {"runs": rows, "summary": summary})
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
