"""SDST ablations on the embedded synthetic grounding benchmark, over several seeds.

Variants (paper Table 5 and Table K, at synthetic scale):
  sdst           the full model (RDSA as Eq. 10-11: offsets from CNN(D)[l,c,r] only, K=4)
  sdst_hybrid    RDSA whose offset query also gets a linear map of H (rdsa_use_latent=true)
  deformable_ca  Def. CA baseline: offsets from the decoder latents (Eq. 7-9)
  standard_ca    standard cross-attention from the decoder latents to the dense stream
  k1             K=1: only the last layer's features, one refinement level

Each seed generates its own synthetic set (``sidetune synth grounding`` with that seed) and
trains every variant with that seed; the test split is scored with the official metrics.
Results are written per run (``OUT/results/{variant}_s{seed}.json``) so an interrupted sweep
resumes where it stopped, then summarised as mean +- std in ``OUT/summary.json`` and a
markdown table.

    python bench/grounding_ablations.py --out runs/ablations --seeds 0 1 2 --workers 2 \\
        --set train.epochs=30 train.lr_milestones=[22]
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
    "sdst": [],
    "sdst_hybrid": ["model.rdsa_use_latent=true"],
    "deformable_ca": ["model.attention=deformable_ca"],
    "standard_ca": ["model.attention=standard_ca"],
    "k1": ["model.num_levels=1", "data.layers=[-1]"],
}
REPORTED = [
    "MR-full-R1@0.5",
    "MR-full-R1@0.7",
    "MR-full-mAP",
    "MR-full-mAP@0.5",
    "MR-full-mAP@0.75",
    "MR-short-mAP",
    "MR-middle-mAP",
    "MR-long-mAP",
    "HL-min-VeryGood-mAP",
    "HL-min-VeryGood-Hit1",
]


def _make_data(out: Path, seed: int) -> Path:
    from sidetune.grounding.synthetic import SynthConfig, generate, write

    data = out / f"data_s{seed}"
    if not (data / "test.jsonl").exists():
        write(generate(SynthConfig(seed=seed)), data)
    return data


def _run_one(
    out: Path, variant: str, seed: int, extra: Sequence[str], threads: int
) -> dict[str, Any]:
    import torch

    from sidetune.grounding.recipe import (
        brief_metrics,
        load_grounding_config,
        predict,
        run_training,
    )
    from sidetune.grounding.synthetic import data_overrides
    from sidetune.utils.io import write_json

    torch.set_num_threads(threads)
    data = out / f"data_s{seed}"
    run_dir = out / "runs" / f"{variant}_s{seed}"
    overrides = [
        f"run_dir={run_dir}",
        *data_overrides(data),
        f"train.seed={seed}",
        "train.progress=false",
        *extra,
        *VARIANTS[variant],
    ]
    shutil.rmtree(run_dir, ignore_errors=True)  # a run cut short earlier restarts clean
    t0 = time.perf_counter()
    result = run_training(load_grounding_config("sdst_synthetic", overrides))
    train_s = time.perf_counter() - t0
    test = predict(run_dir, split="test", out=run_dir / "preds_test.jsonl", device="cpu")
    row = {
        "variant": variant,
        "seed": seed,
        "epochs": result["epochs"],
        "best_epoch": result["best_epoch"],
        "train_seconds": round(train_s, 1),
        "test": brief_metrics(test["metrics"]),
    }
    write_json(out / "results" / f"{variant}_s{seed}.json", row)
    return row


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    """``{variant: {metric: (mean, std)}}`` over seeds (population std: 3 seeds is few)."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r)
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    for variant, runs in by_variant.items():
        summary[variant] = {}
        for key in REPORTED:
            values = [float(r["test"][key]) for r in runs]
            summary[variant][key] = (statistics.fmean(values), statistics.pstdev(values))
    return summary


def markdown(summary: dict[str, dict[str, tuple[float, float]]], seeds: int) -> str:
    head = "| variant | " + " | ".join(REPORTED) + " |"
    lines = [head, "|" + "---|" * (len(REPORTED) + 1)]
    for variant in VARIANTS:
        if variant not in summary:
            continue
        cells = [f"{m:.2f} ± {s:.2f}" for m, s in (summary[variant][k] for k in REPORTED)]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines.append(f"\n(test split, mean ± std over {seeds} seeds)")
    return "\n".join(lines)


PER_SEED = ["MR-full-mAP", "MR-full-R1@0.7", "MR-long-mAP", "HL-min-VeryGood-mAP"]


def per_seed_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """One row per variant, one column per seed and metric of ``PER_SEED`` (test split)."""
    seeds = sorted({int(r["seed"]) for r in rows})
    by = {(r["variant"], int(r["seed"])): r for r in rows}
    head = "| variant | " + " | ".join(f"{k} s{s}" for k in PER_SEED for s in seeds) + " |"
    lines = [head, "|" + "---|" * (len(PER_SEED) * len(seeds) + 1)]
    for variant in VARIANTS:
        if not any((variant, s) in by for s in seeds):
            continue
        cells = [
            f"{by[(variant, s)]['test'][k]:.2f}" if (variant, s) in by else "-"
            for k in PER_SEED
            for s in seeds
        ]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--out", type=Path, default=Path("runs/ablations"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for every run, e.g. train.epochs=30 train.lr_milestones=[22]",
    )
    p.add_argument("--workers", type=int, default=2, help="runs in parallel (1 thread each)")
    p.add_argument("--summary-only", action="store_true", help="only summarise the finished runs")
    args = p.parse_args(argv)

    from sidetune.utils.io import write_json

    out: Path = args.out
    for seed in args.seeds:
        _make_data(out, seed)
    todo = [
        (v, s)
        for s in args.seeds
        for v in args.variants
        if not (out / "results" / f"{v}_s{s}.json").exists() and not args.summary_only
    ]
    print(f"{len(todo)} runs to do ({args.workers} at a time)", flush=True)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(_run_one, out, v, s, args.set, 1) for v, s in todo]
        for fut in futures:
            row = fut.result()
            t = row["test"]
            print(
                f"{row['variant']:>14} seed {row['seed']}: MR-full-mAP {t['MR-full-mAP']:.2f}  "
                f"R1@0.7 {t['MR-full-R1@0.7']:.2f}  HD-VG-mAP {t['HL-min-VeryGood-mAP']:.2f}  "
                f"({row['train_seconds']:.0f}s)",
                flush=True,
            )
    # Summarise what exists (a sweep cut short still reports its finished runs).
    paths = [out / "results" / f"{v}_s{s}.json" for s in args.seeds for v in args.variants]
    rows = [json.loads(p.read_text()) for p in paths if p.exists()]
    summary = summarise(rows)
    write_json(out / "summary.json", {"runs": rows, "summary": summary})
    print(markdown(summary, len({r["seed"] for r in rows})))
    print()
    print(per_seed_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
