"""CPU float32 linear layers: BLAS (``F.linear``, MKL's sgemm) vs oneDNN (``sidetune.nn.Linear``).

``--dropout`` also times dropout (p = 0.5, forward + backward) on SDST's video-projection hidden:
``nn.Dropout`` (``bernoulli_``) vs ``sidetune.nn.Dropout`` (``torch.rand``).

For each shape ``(rows, in, out)`` it times the forward pass and forward + backward (input and
weight gradients, as in training) with both backends, and reports GFLOP/s (``2 * rows * in *
out`` per product; three products for forward + backward). The default shapes are the large
products of an SDST step at the paper's shapes (dense FFN and projections on 2,400 clip rows,
the video projection on 8,640 valid rows of 4 levels, the 4096-d text projection, the sparse
stream on 960 query rows) and of a TDS-CLIP ViT-B/16 side block (D=320 on 32 x 197 tokens).
Prints a table and writes ``bench/results/cpu_linear.json`` atomically.

    python bench/bench_cpu_linear.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

import sidetune.nn.linear as fast_linear
from sidetune.nn.linear import linear, onednn_available
from sidetune.utils.io import write_json

RESULTS = Path(__file__).resolve().parent / "results" / "cpu_linear.json"

SHAPES = {
    "sdst dense FFN fc1": (2400, 256, 1024),
    "sdst dense FFN fc2": (2400, 1024, 256),
    "sdst dense projection": (2400, 256, 256),
    "sdst video projection": (8640, 768, 256),
    "sdst text projection": (647, 4096, 256),
    "sdst sparse projection": (960, 256, 256),
    "tds side MLP fc1 (B/16, D=320)": (6304, 320, 1280),
    "tds side tap projection (768 -> 320)": (6304, 768, 320),
}
# --small: the demo's tiny SDST (hidden 32) and short query batches, around the size below
# which sidetune.nn.linear keeps BLAS (MIN_MACS multiply-adds)
SMALL_SHAPES = {
    "tiny 2400 x 32 x 32": (2400, 32, 32),
    "tiny 960 x 32 x 32": (960, 32, 32),
    "tiny 192 x 32 x 32": (192, 32, 32),
    "tiny 2400 x 32 x 64": (2400, 32, 64),
    "tiny 30 x 256 x 256": (30, 256, 256),
    "tiny 100 x 256 x 256": (100, 256, 256),
}


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _time_backend(
    op: Callable[[Tensor, Tensor, Tensor], Tensor], rows: int, fin: int, fout: int, repeats: int
) -> tuple[float, float]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, fin, generator=g, requires_grad=True)
    w = torch.randn(fout, fin, generator=g, requires_grad=True)
    b = torch.randn(fout, generator=g, requires_grad=True)
    grad = torch.randn(rows, fout, generator=g)

    def forward() -> None:
        with torch.no_grad():
            op(x, w, b)

    def train() -> None:
        op(x, w, b).backward(grad)

    return _median_seconds(forward, repeats), _median_seconds(train, repeats)


def _time_dropout(repeats: int) -> dict[str, float]:
    from sidetune.nn.dropout import Dropout

    x = torch.randn(8640, 256, requires_grad=True)
    out = {}
    for name, module in (("nn.Dropout", torch.nn.Dropout(0.5)), ("sidetune", Dropout(0.5))):
        module.train()
        seconds = _median_seconds(lambda m=module: m(x).sum().backward(), repeats)
        out[name] = round(seconds * 1e3, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--small", action="store_true", help="also time small products")
    p.add_argument("--dropout", action="store_true", help="also time dropout masks")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    fast_linear.MIN_MACS = 0  # time oneDNN on every shape, also where linear() would not use it
    if not onednn_available():
        print("this PyTorch has no oneDNN linear op: nothing to compare", file=sys.stderr)
        return 1
    rows_out = []
    shapes = {**SHAPES, **(SMALL_SHAPES if args.small else {})}
    for name, (rows, fin, fout) in shapes.items():
        flop = 2 * rows * fin * fout
        blas = _time_backend(F.linear, rows, fin, fout, args.repeats)
        onednn = _time_backend(linear, rows, fin, fout, args.repeats)
        rows_out.append(
            {
                "name": name,
                "shape": [rows, fin, fout],
                "blas_fwd_gflops": round(flop / blas[0] / 1e9, 1),
                "onednn_fwd_gflops": round(flop / onednn[0] / 1e9, 1),
                "blas_train_gflops": round(3 * flop / blas[1] / 1e9, 1),
                "onednn_train_gflops": round(3 * flop / onednn[1] / 1e9, 1),
                "train_speedup": round(blas[1] / onednn[1], 2),
            }
        )
    drop: dict[str, float] = {}
    if args.dropout:
        drop = _time_dropout(args.repeats)
    result = {
        "benchmark": "cpu_linear",
        "device_name": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "shapes": rows_out,
        **({"dropout_ms": drop} if drop else {}),
    }
    print(
        f"CPU linear, float32, {result['torch_threads']} threads, torch {result['torch']} "
        f"(GFLOP/s; train = forward + input and weight gradients)"
    )
    print(
        f"  {'shape':<40} {'rows x in x out':>18} {'fwd BLAS':>9} {'oneDNN':>7} "
        f"{'train BLAS':>11} {'oneDNN':>7} {'speed-up':>9}"
    )
    for r in rows_out:
        dims = "x".join(str(d) for d in r["shape"])
        print(
            f"  {r['name']:<40} {dims:>18} {r['blas_fwd_gflops']:>9} {r['onednn_fwd_gflops']:>7} "
            f"{r['blas_train_gflops']:>11} {r['onednn_train_gflops']:>7} {r['train_speedup']:>8}x"
        )
    if drop:
        print(
            "  dropout p=0.5 on (8640, 256), forward + backward, ms: "
            + ", ".join(f"{k} {v}" for k, v in drop.items())
        )
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
