"""SDST training-step benchmark at the paper's shapes.

One step = SDST forward + every loss term (with the Hungarian matcher) + backward + gradient
clipping + AdamW, exactly what ``sidetune train`` runs per iteration. Default shapes follow
the QVHighlights setting: batch 32, T=75 clips, K=4 levels, L=32 tokens, M=30 queries,
F_v=768, F_t=4096 (released LLaMA text features: one layer for all K levels, as the data
pipeline sends it; ``--text-levels distinct`` for a text layer per level).

Reports seconds per step, GFLOP per step (``torch.utils.flop_counter``: matmuls, convolutions,
attention; forward + backward) and memory: on CPU the process's peak resident memory
(``resource.getrusage``, no psutil) next to the resident memory before the first step; on CUDA
it/s (steps queued without a host sync inside the timed window, as the trainer does between
log points) and ``torch.cuda.max_memory_allocated``. ``--compare-plain`` also times the plain
reference paths (``sidetune.nn.fast.plain_paths``) in interleaved rounds; ``--epoch`` adds
``bench_sdst_epoch.py``'s epoch-vs-steps ratio. Prints a table and writes
``bench/results/sdst_step.json`` atomically. ``--profile`` prints the top operators of a step.

    python bench/bench_sdst_step.py --threads 2 --compare-plain --rounds 3 --steps 9   # CPU
    python bench/bench_sdst_step.py --device cuda --amp bf16 --steps 50 --warmup 10    # GPU
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sidetune.engine import (
    TrainConfig,
    autocast_context,
    build_optimizer,
    param_groups,
    resolve_device,
)
from sidetune.grounding.losses import LossConfig, SDSTCriterion
from sidetune.grounding.model import SDSTConfig, build_sdst
from sidetune.nn.fast import plain_paths
from sidetune.utils.io import write_json
from sidetune.utils.params import count_parameters

RESULTS = Path(__file__).resolve().parent / "results" / "sdst_step.json"


def rss_mib() -> float:
    """Current resident set size (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (
        peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
    )  # bytes on macOS, KiB on Linux


def make_batch(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    b, k, t, length = args.batch_size, args.levels, args.clips, args.tokens
    video = torch.randn(b, k, t, args.video_dim, generator=g)
    # The released 4096-d LLaMA text features are one layer, which the data pipeline sends once
    # for all K levels ((B, 1, L, F_t)); "distinct" gives every level its own text layer.
    k_text = 1 if args.text_levels == "shared" else k
    text = torch.randn(b, k_text, length, args.text_dim, generator=g)
    video_mask = torch.ones(b, t, dtype=torch.bool)
    text_mask = torch.ones(b, length, dtype=torch.bool)
    # Realistic padding: some shorter videos and queries.
    video_mask[b // 2 :, int(t * 0.8) :] = False
    text_mask[:, length // 2 :] = torch.rand(b, length - length // 2, generator=g) < 0.3
    text_mask[:, 0] = True
    spans = []
    for i in range(b):
        n = 1 + i % 3
        center = torch.rand(n, generator=g) * 0.6 + 0.2
        width = torch.rand(n, generator=g) * 0.2 + 0.05
        spans.append(torch.stack([center, width], dim=1).to(device))
    saliency = (torch.rand(b, t, generator=g) * 12).floor() * (torch.rand(b, t, generator=g) < 0.3)
    saliency = saliency * video_mask
    return {
        "video_feats": video.to(device),
        "video_mask": video_mask.to(device),
        "text_feats": text.to(device),
        "text_mask": text_mask.to(device),
        "targets": {"spans": spans, "saliency": saliency.to(device)},
    }


def _value(text: str) -> Any:
    """``4`` -> 4, ``0.1`` -> 0.1, ``true`` -> True, anything else as given."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--device", default="auto", help="cpu | cuda | auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--clips", type=int, default=75, help="T")
    p.add_argument("--levels", type=int, default=4, help="K")
    p.add_argument("--tokens", type=int, default=32, help="L")
    p.add_argument("--queries", type=int, default=30, help="M")
    p.add_argument("--video-dim", type=int, default=768)
    p.add_argument("--text-dim", type=int, default=4096)
    p.add_argument("--hidden-dim", type=int, default=256)
    p.add_argument(
        "--model",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="further model.* keys, e.g. num_heads=4 ffn_ratio=2 (the demo's shapes)",
    )
    p.add_argument(
        "--text-levels",
        default="shared",
        choices=["shared", "distinct"],
        help="one text layer for all levels (released LLaMA features) or one per level",
    )
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="GPU only")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    p.add_argument("--rounds", type=int, default=1, help="timing rounds (interleaved)")
    p.add_argument(
        "--compare-plain",
        action="store_true",
        help="also time the plain reference paths (sidetune.nn.fast), interleaved",
    )
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    p.add_argument(
        "--plain-optimizer", action="store_true", help="for-loop AdamW on CPU (not fused)"
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the dense and sparse stream layers (experiment)",
    )
    p.add_argument(
        "--epoch", action="store_true", help="also run bench_sdst_epoch.py (epoch vs steps)"
    )
    p.add_argument("--epoch-args", default="", help="arguments for bench_sdst_epoch.py")
    p.add_argument("--profile", action="store_true", help="print the top operators of one step")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def build_step(
    argv: list[str] | None = None,
) -> tuple[Callable[[], Tensor], dict[str, Any]]:
    """A closure running one training step (returns the loss) and facts about the model."""
    args = parse_args(argv)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model_cfg = SDSTConfig(
        video_dim=args.video_dim,
        text_dim=args.text_dim,
        hidden_dim=args.hidden_dim,
        num_queries=args.queries,
        num_levels=args.levels,
    )
    model_cfg = replace(
        model_cfg, **{k: _value(v) for k, v in (o.split("=", 1) for o in args.model)}
    )
    model = build_sdst(model_cfg).to(device).train()
    if args.compile:
        for layers in (model.dense_layers, model.sparse_layers):
            for i, layer in enumerate(layers):
                layers[i] = torch.compile(layer, dynamic=False)  # type: ignore[assignment]
    criterion = SDSTCriterion(LossConfig()).to(device)
    train_cfg = TrainConfig(amp=args.amp)
    optimizer = build_optimizer(
        param_groups(model, train_cfg),
        train_cfg,
        fused=device.type == "cuda" or (device.type == "cpu" and not args.plain_optimizer),
    )
    scaler = torch.amp.GradScaler("cuda") if args.amp == "fp16" and device.type == "cuda" else None
    params = [q for g in optimizer.param_groups for q in g["params"]]
    batch = make_batch(args, device)
    inputs = [batch[k] for k in ("video_feats", "video_mask", "text_feats", "text_mask")]

    def step() -> Tensor:
        with autocast_context(args.amp, device):
            losses = criterion(model(*inputs), batch["targets"])
        loss = losses["loss"]
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, train_cfg.clip_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        return loss.detach()

    trainable, total = count_parameters(model)
    return step, {"args": args, "device": device, "trainable": trainable, "total": total}


_COUNTED: set[Any] = set()


def count_gflop(step: Callable[[], Any]) -> float:
    """FLOPs of one step (forward + backward; ``torch.utils.flop_counter``: matmuls,
    convolutions, attention), in GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is not None and op.default not in _COUNTED:
        # sidetune.nn.Linear's oneDNN product: x (N, I) @ weight (O, I)^T, 2 N I O FLOPs

        @register_flop_formula(op)
        def _linear_flop(x_shape: Any, w_shape: Any, *args: Any, **kwargs: Any) -> int:
            return 2 * x_shape[0] * w_shape[1] * w_shape[0]

        _COUNTED.add(op.default)
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / 1e9


def time_steps(step: Callable[[], Tensor], n: int, device: torch.device) -> list[float]:
    """Seconds per step of ``n`` steps. On CUDA the loop never syncs inside (the trainer syncs
    once per logged step); the mean of the synced window is returned ``n`` times."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        torch.cuda.synchronize()
        return [(time.perf_counter() - t0) / n] * n
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    step, info = build_step(argv)
    device = info["device"]

    rss_before = rss_mib()
    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times: list[float] = []
    plain_times: list[float] = []
    cpu0 = time.process_time()
    # Interleaved rounds (fast, then plain if asked) so that a shared machine's load hits both.
    per_round = max(1, args.steps // args.rounds)
    for _ in range(args.rounds):
        times += time_steps(step, per_round, device)
        if args.compare_plain:
            with plain_paths():
                plain_times += time_steps(step, per_round, device)
    cpu_per_step = (time.process_time() - cpu0) / (len(times) + len(plain_times))
    loss = float(step())
    peak_rss = peak_rss_mib()
    trainable, total = info["trainable"], info["total"]
    result: dict[str, Any] = {
        "benchmark": "sdst_train_step",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "amp": args.amp,
        "shapes": {
            "batch": args.batch_size,
            "T": args.clips,
            "K": args.levels,
            "L": args.tokens,
            "M": args.queries,
            "F_v": args.video_dim,
            "F_t": args.text_dim,
            "text_levels": args.text_levels,
            "hidden": args.hidden_dim,
        },
        "params_trainable": trainable,
        "params_total": total,
        "steps": len(times),
        "step_s_median": round(statistics.median(times), 4),
        "step_s_min": round(min(times), 4),
        "it_per_s": round(1.0 / statistics.median(times), 3),
        # process CPU seconds (all threads) per step: less sensitive to a shared machine
        "cpu_s_per_step": round(cpu_per_step, 4),
        "last_loss": round(loss, 4),
    }
    if plain_times:
        result["plain_step_s_median"] = round(statistics.median(plain_times), 4)
        result["fast_over_plain"] = round(
            statistics.median(times) / statistics.median(plain_times), 3
        )
    if device.type == "cuda":
        result["max_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    else:
        result["rss_before_mib"] = round(rss_before, 1)
        result["peak_rss_mib"] = round(peak_rss, 1)
    if not args.no_flops:
        result["gflop_per_step"] = round(count_gflop(step), 2)
        if args.compare_plain:
            with plain_paths():
                result["plain_gflop_per_step"] = round(count_gflop(step), 2)
    if args.epoch:
        from bench_sdst_epoch import run_epoch_bench

        epoch = run_epoch_bench(args.epoch_args.split())
        result["epoch"] = epoch

    rows = [(k, v) for k, v in result.items() if k not in ("shapes", "epoch")]
    rows.insert(2, ("shapes", " ".join(f"{k}={v}" for k, v in result["shapes"].items())))
    if "epoch" in result:
        rows += [(f"epoch.{k}", v) for k, v in result["epoch"].items()]
    width = max(len(k) for k, _ in rows)
    print("SDST training step (forward + losses + matcher + backward + clip + AdamW)")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    write_json(args.out, result)
    print(f"wrote {args.out}")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            step()
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=25))
    return 0


if __name__ == "__main__":
    sys.exit(main())
