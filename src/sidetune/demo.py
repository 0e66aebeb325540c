"""``python -m sidetune.demo --out DIR`` (``make demo``): from rendered mp4s to grounded moments, on CPU.

1. renders the synthetic grounding videos (``DIR/rendered/videos/*.mp4``: shapes of several
   colours and sizes moving in different directions, with distractors; queries from a small
   grammar; ``DIR/rendered/{train,val,test}.jsonl`` hold the ground truth);
2. extracts K=4 layers with the tiny frozen InternVideo2 video and text towers (random weights
   seeded from their names, packaged vocabulary) into ``DIR/rendered/features``;
3. trains SDST (the ``sdst_rendered`` config) for a fixed number of epochs into ``DIR/run``,
   picking the best epoch on val by MR-full-mAP;
4. writes the official predictions of val and test (``DIR/preds_{val,test}.jsonl`` and
   ``DIR/preds_{val,test}_metrics.json``) and prints the brief metrics;
5. runs ``sidetune ground`` (:class:`~sidetune.grounding.inference.Grounder`) on a held-out test
   video with its query, from the mp4, printing the found moment next to the truth
   (``DIR/ground_example.{json,png}``), then on every held-out test query, and reports the hit rate
   (top-1 moment with IoU >= 0.5 with a ground-truth window).

The work is fixed (videos, epochs), not a time budget: on a slower machine the demo takes longer
and gives the same numbers. ``--max-train-minutes`` adds a guard; if it ever cuts training short
the demo says so loudly, because its numbers then are not the documented ones.
``DIR/demo.json`` lists every output path (what ``sidetune serve --run DIR/run`` reads).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from sidetune.errors import SidetuneError

CONFIG = "sdst_rendered"
BACKBONE = "internvideo2-tiny"
POOL: Literal["mean"] = "mean"  # the tiny random backbone's adaptive pool varies too little
LAYERS = [1, 2, 3, 4]
IOU_HIT = 0.5


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


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def _warn(lines: Sequence[str]) -> None:
    bar = "!" * 78
    print(f"\n{bar}", file=sys.stderr)
    for line in lines:
        print(f"!!  {line}", file=sys.stderr)
    print(f"{bar}\n", file=sys.stderr, flush=True)


def extract(root: Path, progress: bool) -> None:
    """Tiny-backbone features of every rendered video and query (``sidetune extract``)."""
    from sidetune.backbones import create_backbone, create_text_backbone
    from sidetune.features.extract import ExtractConfig, run_extraction

    cfg = ExtractConfig(
        out=root / "features", videos=root / "videos",
        annotations=[root / f"{s}.jsonl" for s in ("train", "val", "test")],
        layers=LAYERS, pool=POOL, device="cpu", progress=progress,
    )  # fmt: skip
    summary = run_extraction(cfg, create_backbone(BACKBONE), create_text_backbone(BACKBONE))
    if summary.videos_failed:
        raise SidetuneError(f"extraction failed for {len(summary.videos_failed)} rendered videos")


def ground_test_set(run_dir: Path, root: Path, out: Path) -> dict[str, Any]:
    """``Grounder`` on every held-out test query, from the mp4; the first one is shown in full."""
    from sidetune.grounding.annotations import load_annotations
    from sidetune.grounding.inference import Grounder
    from sidetune.grounding.plot import plot_results
    from sidetune.utils.io import write_json

    grounder = Grounder.from_run(run_dir, cache_dir=out / "cache")
    records = load_annotations(root / "test.jsonl").records
    hits, per_query = 0, []
    t0 = time.perf_counter()
    for i, rec in enumerate(records):
        video = root / "videos" / f"{rec.vid}.mp4"
        [res] = grounder.ground(video, rec.query)
        top = res.moments[0] if res.moments else None
        best = (
            max((_iou((top.start, top.end), w) for w in rec.windows), default=0.0) if top else 0.0
        )
        hits += best >= IOU_HIT
        per_query.append({"qid": rec.qid, "iou": round(best, 4)})
        if i == 0:
            truth = ", ".join(f"{s:.0f}-{e:.0f} s" for s, e in rec.windows)
            print(f"      held-out video {video.name} ({res.duration:.0f} s), held-out query: "
                  f'"{rec.query}"')  # fmt: skip
            for j, m in enumerate(res.moments[:3], start=1):
                print(f"        found #{j}: {m.start:6.1f} - {m.end:6.1f} s  (score {m.score:.3f})")
            print(f"        truth:    {truth}   -> IoU of the top moment {best:.2f}")
            write_json(out / "ground_example.json", {"video": str(video), "truth": rec.windows,
                                                     **res.to_dict()})  # fmt: skip
            plot_results([res], out / "ground_example.png", gt=rec.windows, title=video.name)
    rate = 100.0 * hits / len(records)
    print(f"      hit rate on the held-out test set: {hits}/{len(records)} = {rate:.1f}% "
          f"(top-1 moment IoU >= {IOU_HIT}), {time.perf_counter() - t0:.0f}s")  # fmt: skip
    return {"hits": hits, "queries": len(records), "hit_rate": rate, "per_query": per_query}


def run(
    out: Path,
    epochs: int | None = None,
    seed: int = 0,
    videos: int | None = None,
    max_train_minutes: float = 0.0,
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The whole demo; returns ``{"val": brief, "test": brief, "ground": hit-rate summary}``."""
    from sidetune.grounding.recipe import (
        brief_metrics,
        build_model,
        load_grounding_config,
        predict,
        run_training,
    )
    from sidetune.grounding.render import RenderConfig, render_benchmark
    from sidetune.utils.io import write_json
    from sidetune.utils.params import count_parameters

    t0 = time.perf_counter()
    # One intra-op thread by default: at these widths a second thread buys little, and on a
    # shared machine two spinning OpenMP threads per process were measured ~10x slower.
    torch.set_num_threads(threads or 1)
    out = Path(out)
    root = out / "rendered"
    render_cfg = (
        RenderConfig(seed=seed) if videos is None else RenderConfig(seed=seed, videos=videos)
    )
    print(
        f"[1/5] rendering {render_cfg.videos} synthetic videos into {root / 'videos'} ...",
        flush=True,
    )
    summary = render_benchmark(render_cfg, root)
    q, v = summary["queries"], summary["videos"]
    print(f"      {v['train']}/{v['val']}/{v['test']} videos, {q['train']}/{q['val']}/{q['test']} "
          f"queries (train/val/test) ({time.perf_counter() - t0:.0f}s)")  # fmt: skip

    t1 = time.perf_counter()
    print(f"[2/5] extracting K={len(LAYERS)} layers with the tiny frozen {BACKBONE} towers ...", flush=True)  # fmt: skip
    extract(root, progress)
    print(f"      {root / 'features'} ({time.perf_counter() - t1:.0f}s)")

    run_dir = out / "run"
    if run_dir.exists():  # the demo's own previous output
        shutil.rmtree(run_dir)
    feats = root / "features"
    overrides = [
        f"run_dir={run_dir}",
        f"data.train={root / 'train.jsonl'}", f"data.val={root / 'val.jsonl'}",
        f"data.test={root / 'test.jsonl'}", f"data.video_features={feats / 'video_features'}",
        f"data.text_features={feats / 'text_features'}",
        f"train.seed={seed}", f"train.max_time_s={max_train_minutes * 60:g}",
        f"train.progress={str(progress).lower()}",
    ]  # fmt: skip
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    cfg = load_grounding_config(CONFIG, overrides)
    trainable, total = count_parameters(build_model(cfg))
    print(f"[3/5] training SDST ({trainable:,} trainable / {total:,} parameters) for "
          f"{cfg.train.epochs} epochs on {torch.get_num_threads()} CPU thread(s) -> {run_dir}", flush=True)  # fmt: skip
    t_train = time.perf_counter()
    result = run_training(cfg)
    print(f"      {result['epochs']} epochs, {result['step']} steps in {time.perf_counter() - t_train:.0f}s; "
          f"best val {result['best_metric']}={result['best']:.2f} at epoch {result['best_epoch']}")  # fmt: skip
    if result["stopped_early"]:
        _warn([
            f"TRAINING WAS CUT SHORT: {result['epochs']} of {cfg.train.epochs} epochs ran before the",
            f"--max-train-minutes={max_train_minutes:g} guard. The numbers below are NOT the demo's",
            "documented results; run again without --max-train-minutes for the full demo.",
        ])  # fmt: skip

    print("[4/5] writing predictions with the best checkpoint ...", flush=True)
    briefs: dict[str, dict[str, float]] = {}
    for split in ("val", "test"):
        res = predict(run_dir, split=split, out=out / f"preds_{split}.jsonl", device="cpu")
        briefs[split] = brief_metrics(res["metrics"])
        print(
            f"      {res['predictions']} ({res['num_rows']} queries), metrics: {res['metrics_path']}"
        )
    print("\n      SDST on the rendered videos: official QVHighlights metrics (brief)")
    print("\n".join("      " + line for line in metrics_table(briefs).splitlines()))

    print("\n[5/5] sidetune ground on held-out rendered videos (decode -> tiny backbones -> SDST) ...", flush=True)  # fmt: skip
    ground = ground_test_set(run_dir, root, out)
    paths = {
        "run": str(run_dir), "videos": str(root / "videos"),
        "gt": {s: str(root / f"{s}.jsonl") for s in ("train", "val", "test")},
        "predictions": {s: str(out / f"preds_{s}.jsonl") for s in ("val", "test")},
        "features": str(feats), "ground_example": str(out / "ground_example.png"),
    }  # fmt: skip
    finite = {s: {k: (v if v == v else None) for k, v in b.items()} for s, b in briefs.items()}
    write_json(out / "demo.json", {  # strict JSON: NaN (no long moments) becomes null
        "paths": paths, "metrics": finite, "hit_rate": ground["hit_rate"],
        "hits": ground["hits"], "test_queries": ground["queries"],
        "epochs_run": result["epochs"], "epochs": cfg.train.epochs,
        "stopped_early": result["stopped_early"], "seconds": round(time.perf_counter() - t0, 1),
    })  # fmt: skip
    print(f"\ndone in {time.perf_counter() - t0:.0f}s; run directory: {run_dir}; "
          f"output paths: {out / 'demo.json'}")  # fmt: skip
    if result["stopped_early"]:
        _warn([f"REMINDER: training was cut short ({result['epochs']}/{cfg.train.epochs} epochs)."])
    return {**briefs, "ground": ground}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m sidetune.demo", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument(
        "--out", type=Path, default=Path("demo_out"), help="output directory (default %(default)s)"
    )
    p.add_argument("--epochs", type=int, default=None, help="override the config's train.epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--videos", type=int, default=None, help="rendered videos (default 400)")
    p.add_argument(
        "--max-train-minutes", type=float, default=0.0,
        help="optional training time guard (default: none; a cut-short run is flagged loudly)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    args = p.parse_args(argv)
    try:
        run(
            args.out, epochs=args.epochs, seed=args.seed, videos=args.videos,
            max_train_minutes=args.max_train_minutes, threads=args.threads,
            progress=not args.no_progress,
        )  # fmt: skip
    except SidetuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
