"""``python -m sidetune.demo --out DIR`` (``make demo``): SDST end to end on CPU in minutes.

1. generates the embedded synthetic grounding benchmark (``DIR/synthetic``: public feature
   layouts, QVHighlights-style annotations);
2. trains the ``sdst_synthetic`` config on it (``DIR/run``: checkpoints, ``log.jsonl``,
   TensorBoard, ``config.yaml``), selecting the best epoch on val by MR-full-mAP;
3. writes the official predictions of val and test (``DIR/preds_{val,test}.jsonl``) and
   their full metrics (``DIR/preds_{val,test}_metrics.json``);
4. prints the official brief metrics table (MR R1/mAP by IoU and length, HD mAP/HIT@1).

A wall-clock guard (``--max-train-minutes``) stops training after the epoch that crosses it,
so the demo stays under 10 minutes on a slow 2-core machine; on a normal one every epoch runs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from sidetune.errors import SidetuneError

CONFIG = "sdst_synthetic"


def metrics_table(columns: dict[str, dict[str, float]]) -> str:
    """Brief metrics of several splits side by side (rows in the evaluator's key order)."""
    names = list(columns)
    keys = list(next(iter(columns.values())))
    width = max(len(k) for k in [*keys, "metric"])
    head = f"{'metric':<{width}}" + "".join(f"  {n:>8}" for n in names)
    lines = [head, "-" * len(head)]
    for k in keys:
        lines.append(
            f"{k:<{width}}" + "".join(f"  {columns[n].get(k, float('nan')):>8.2f}" for n in names)
        )
    return "\n".join(lines)


def run(
    out: Path,
    epochs: int | None = None,
    seed: int = 0,
    videos: int | None = None,
    max_train_minutes: float = 7.0,
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """The whole demo; returns ``{"val": brief, "test": brief}``."""
    from sidetune.grounding.recipe import (
        brief_metrics,
        build_model,
        load_grounding_config,
        predict,
        run_training,
    )
    from sidetune.grounding.synthetic import SynthConfig, data_overrides, generate, write
    from sidetune.utils.params import count_parameters

    t0 = time.perf_counter()
    # One intra-op thread by default: at these widths a second thread buys little, and on a
    # shared machine two spinning OpenMP threads per process were measured ~10x slower.
    torch.set_num_threads(threads or 1)
    out = Path(out)
    data = out / "synthetic"
    synth = SynthConfig(seed=seed) if videos is None else SynthConfig(seed=seed, videos=videos)
    print(f"[1/3] generating the synthetic benchmark in {data} ...", flush=True)
    summary = write(generate(synth), data)
    q = summary["queries"]
    print(f"      {q['train']}/{q['val']}/{q['test']} queries (train/val/test), K={synth.layers}, "
          f"F_v={synth.video_dim}, F_t={synth.text_dim} ({time.perf_counter() - t0:.0f}s)")  # fmt: skip

    run_dir = out / "run"
    if run_dir.exists():  # the demo's own previous output
        shutil.rmtree(run_dir)
    overrides = [
        f"run_dir={run_dir}",
        *data_overrides(data),
        f"train.seed={seed}",
        f"train.max_time_s={max_train_minutes * 60:g}",
        f"train.progress={str(progress).lower()}",
    ]
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    cfg = load_grounding_config(CONFIG, overrides)
    trainable, total = count_parameters(build_model(cfg))
    print(f"[2/3] training SDST ({trainable:,} trainable / {total:,} parameters) for "
          f"{cfg.train.epochs} epochs on {torch.get_num_threads()} CPU thread(s) -> {run_dir}", flush=True)  # fmt: skip
    t_train = time.perf_counter()
    result = run_training(cfg)
    note = " (stopped by the time guard)" if result["stopped_early"] else ""
    print(f"      {result['epochs']} epochs, {result['step']} steps in {time.perf_counter() - t_train:.0f}s{note}; "
          f"best val {result['best_metric']}={result['best']:.2f} at epoch {result['best_epoch']}")  # fmt: skip

    print("[3/3] writing predictions with the best checkpoint ...", flush=True)
    briefs: dict[str, dict[str, float]] = {}
    for split in ("val", "test"):
        res = predict(run_dir, split=split, out=out / f"preds_{split}.jsonl", device="cpu")
        briefs[split] = brief_metrics(res["metrics"])
        print(
            f"      {res['predictions']} ({res['num_rows']} queries), metrics: {res['metrics_path']}"
        )

    print()
    print("SDST on the synthetic benchmark: official QVHighlights metrics (brief)")
    print(metrics_table(briefs))
    print(f"\ndone in {time.perf_counter() - t0:.0f}s; run directory: {run_dir}")
    return briefs


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m sidetune.demo", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument(
        "--out", type=Path, default=Path("demo_out"), help="output directory (default %(default)s)"
    )
    p.add_argument("--epochs", type=int, default=None, help="override the config's train.epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--videos", type=int, default=None, help="synthetic videos (default: the generator's)"
    )
    p.add_argument(
        "--max-train-minutes",
        type=float,
        default=7.0,
        help="training time guard (default %(default)s)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    args = p.parse_args(argv)
    try:
        run(
            args.out,
            epochs=args.epochs,
            seed=args.seed,
            videos=args.videos,
            max_train_minutes=args.max_train_minutes,
            threads=args.threads,
            progress=not args.no_progress,
        )
    except SidetuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
