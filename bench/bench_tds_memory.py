"""Peak training-step memory and step time: TDS-CLIP vs full fine-tuning vs an in-backbone adapter.

Variants (same CLIP ViT, same batch and frames; AdamW step included; fp32; random weights):

* ``tds``       TDS-CLIP as configured by default (frozen CLIP under no_grad, side width D, n local
                frames, TD-Adapter; ``model.lean_saving``, ``model.lean_attention`` and
                ``model.lean_mlp`` on)
* ``tds_noattn`` TDS-CLIP whose side attention keeps q / k / v (``model.lean_attention=false``)
* ``tds_norecompute`` lean saving of elementwise outputs only: the side MLP and attention keep
                their hidden layers (``model.lean_mlp=false model.lean_attention=false``), so
                no matmul or attention runs twice
* ``tds_plain`` TDS-CLIP keeping every tensor autograd saves (``model.lean_saving=false``)
* ``tds_ckpt``  the same with activation checkpointing of the side blocks (``model.grad_checkpointing``)
* ``full``      full fine-tuning of the CLIP tower + linear head on the frame-averaged CLS
* ``adapter``   frozen CLIP with a temporal adapter inside every layer (ST-Adapter style
                bottleneck + depthwise temporal conv): gradients flow through CLIP
* ``authors``   the authors' own TDS-CLIP (``VisualTransformer`` + ``fc`` of BBYL9413/TDS-CLIP,
                frozen as their ``my_fix_clip``, fp32), imported from a local checkout given with
                ``--authors-repo`` (needs ``einops``; nothing of theirs is copied here)
* ``authors_onednn`` the same with its ``nn.Linear`` layers computed by ``sidetune.nn.Linear``
                (oneDNN on the CPU, as ours): what their code would take with our kernels

Each variant runs in a fresh subprocess. On CPU the peak is the process's high-water RSS
(``VmHWM`` / ``ru_maxrss``); on CUDA ``torch.cuda.max_memory_allocated``. On CPU the workers run
with ``MALLOC_MMAP_THRESHOLD_=131072`` (glibc): every tensor buffer is mmapped and returned to
the OS when freed, so RSS tracks live tensors (as the CUDA counter does) instead of glibc's
freed-but-cached heap, which otherwise grows with fragmentation from step to step. The same
setting applies to every variant; ``--glibc-default-malloc`` turns it off. The table shows the
ratios to ``full``; results go to ``bench/results/tds_memory.json`` (atomic write).

    python bench/bench_tds_memory.py                       # CPU: batch 4, 8 frames, ViT-B/16
    python bench/bench_tds_memory.py --device cuda         # GPU: batch 32, 8 frames
    python bench/bench_tds_memory.py --variants tds,full --steps 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

VARIANTS = (
    "tds",
    "tds_noattn",
    "tds_norecompute",
    "tds_plain",
    "tds_ckpt",
    "full",
    "adapter",
    "authors",
    "authors_onednn",
)
TDS_VARIANTS = ("tds", "tds_noattn", "tds_norecompute", "tds_plain", "tds_ckpt")
RESULTS = Path(__file__).resolve().parent / "results" / "tds_memory.json"


def _vm_hwm_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _rss_peak_bytes() -> int:
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ru_bytes = ru if sys.platform == "darwin" else ru * 1024
    return max(ru_bytes, _vm_hwm_bytes())


def _build(variant: str, args: argparse.Namespace) -> tuple[Any, Any, int]:
    """Model, loss closure, number of local frames fed per segment."""
    import torch
    from torch import nn

    from sidetune.recognition.config import TDSModelConfig
    from sidetune.recognition.model import build_clip_vision, build_tds_clip

    arch = {"b16": "clip-vit-b16", "l14": "clip-vit-l14", "tiny": "tiny"}[args.arch]
    mcfg = TDSModelConfig(
        backbone=arch,
        num_classes=args.classes,
        side_dim=args.side_dim,
        num_local_frames=args.local_frames,
        grad_checkpointing=variant == "tds_ckpt",
        lean_saving=variant != "tds_plain",
        lean_attention=variant not in ("tds_noattn", "tds_norecompute", "tds_plain"),
        lean_mlp=variant not in ("tds_norecompute", "tds_plain"),
    )
    if variant in TDS_VARIANTS:
        return build_tds_clip(mcfg), None, args.local_frames
    if variant in ("authors", "authors_onednn"):
        from sidetune.nn.linear import use_fast_linears

        model = _authors_model(args)
        return (
            (use_fast_linears(model) if variant == "authors_onednn" else model),
            None,
            args.local_frames,
        )

    clip: Any = build_clip_vision(mcfg)
    width = clip.config.hidden_size
    if variant == "full":
        for p in clip.parameters():
            p.requires_grad_(True)
        clip.train()

    class FrameClassifier(nn.Module):
        """CLIP per frame -> CLS (post-LN) averaged over T -> linear."""

        def __init__(self) -> None:
            super().__init__()
            self.clip = clip
            self.fc = nn.Linear(width, args.classes)
            self.adapters = nn.ModuleList()
            if variant == "adapter":
                for _ in clip.encoder.layers:
                    self.adapters.append(TemporalAdapter(width, args.frames))

        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            b, t = frames.shape[:2]
            h = self.clip.pre_layrnorm(self.clip.embeddings(frames[:, :, 0].flatten(0, 1)))
            for i, layer in enumerate(self.clip.encoder.layers):
                if self.adapters:
                    h = self.adapters[i](h)
                out = layer(h, None)
                h = out[0] if isinstance(out, tuple) else out
            cls = self.clip.post_layernorm(h[:, 0]).unflatten(0, (b, t)).mean(1)
            return self.fc(cls)

    class TemporalAdapter(nn.Module):
        """x + up(dwconv_t(down(x))) on all tokens; zero-init up so it starts as identity."""

        def __init__(self, width: int, frames: int, bottleneck: int = 384) -> None:
            super().__init__()
            self.t = frames
            self.down = nn.Linear(width, bottleneck)
            self.conv = nn.Conv1d(bottleneck, bottleneck, 3, padding=1, groups=bottleneck)
            self.up = nn.Linear(bottleneck, width)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            bt, n, _ = x.shape
            y = self.down(x).unflatten(0, (bt // self.t, self.t))  # (B, T, N, r)
            y = y.permute(0, 2, 3, 1).reshape(-1, y.shape[-1], self.t)  # (B N, r, T)
            y = self.conv(y).reshape(bt // self.t, n, -1, self.t).permute(0, 3, 1, 2).flatten(0, 1)
            return x + self.up(y)

    return FrameClassifier(), None, 1


def _authors_model(args: argparse.Namespace) -> Any:
    """Their VisualTransformer (side network inside) + fc, as train_vision.py builds it."""
    import importlib.util

    import torch
    from torch import nn

    if not args.authors_repo:
        raise SystemExit("variant 'authors' needs --authors-repo PATH (a TDS-CLIP checkout)")
    spec = importlib.util.spec_from_file_location(
        "authors_clip_model", Path(args.authors_repo) / "clip" / "model.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    width, layers, patch = {"b16": (768, 12, 16), "l14": (1024, 24, 14), "tiny": (64, 4, 8)}[
        args.arch
    ]
    size = 32 if args.arch == "tiny" else 224
    visual = mod.VisualTransformer(
        input_resolution=size, patch_size=patch, width=width, layers=layers, heads=width // 64,
        output_dim=512, T=args.frames, side_dim=args.side_dim, num_diff=args.local_frames,
    )  # fmt: skip

    class AuthorsTDS(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.visual = visual
            self.fc = nn.Linear(args.side_dim, args.classes)

        def forward(self, frames: torch.Tensor) -> torch.Tensor:  # (B, T, n, 3, H, W)
            return self.fc(self.visual(frames.flatten(0, 1).flatten(1, 2)))

    model = AuthorsTDS()
    for name, p in model.named_parameters():  # train_vision.py, my_fix_clip
        p.requires_grad_(not ("visual" in name and "side" not in name))
    model.clip = visual  # the worker reads the image size from here
    visual.config = type("C", (), {"image_size": size})()
    return model


def worker(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    device = torch.device(args.device)
    rss_start = _rss_peak_bytes()
    model, _, n_local = _build(variant, args)
    model.to(device).train()
    if variant in TDS_VARIANTS:
        model.clip.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)
    size = model.clip.config.image_size
    frames = torch.randn(args.batch, args.frames, n_local, 3, size, size, device=device)
    labels = torch.randint(0, args.classes, (args.batch,), device=device)
    trainable = sum(p.numel() for p in params)
    total = sum(p.numel() for p in model.parameters())

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(frames), labels, label_smoothing=0.1)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    rss_model = _rss_peak_bytes()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = [step() for _ in range(args.warmup + args.steps)][args.warmup :]
    out: dict[str, Any] = {
        "variant": variant,
        "trainable_params": trainable,
        "total_params": total,
        "step_s": sum(times) / len(times),
        "step_times_s": times,
        "peak_rss_bytes": _rss_peak_bytes(),
        "rss_after_build_bytes": rss_model,
        "rss_at_start_bytes": rss_start,
    }
    if device.type == "cuda":
        out["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated()
    return out


def _fmt_gb(x: float) -> str:
    return f"{x / 2**30:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument(
        "--batch", type=int, default=0, help="videos per step (default: 4 on CPU, 32 on CUDA)"
    )
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--arch", default="b16", choices=["b16", "l14", "tiny"])
    ap.add_argument("--side-dim", type=int, default=320)
    ap.add_argument("--local-frames", type=int, default=5)
    ap.add_argument("--classes", type=int, default=174)
    ap.add_argument("--steps", type=int, default=2, help="timed steps (after the warm-up steps)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument(
        "--threads", type=int, default=0, help="torch threads per worker (0: torch default)"
    )
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument(
        "--glibc-default-malloc", action="store_true", help="do not set MALLOC_MMAP_THRESHOLD_"
    )
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--authors-repo", default="", help="local TDS-CLIP checkout (variant authors)")
    ap.add_argument(
        "--rounds", type=int, default=1, help="run the variants this many times, interleaved"
    )
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.batch == 0:
        args.batch = 32 if args.device.startswith("cuda") else 4

    if args.worker:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print("RESULT " + json.dumps(worker(args.worker, args)), flush=True)
        return 0

    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    results: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r in range(args.rounds):  # interleaved, so load changes hit every variant alike
        for v in variants:
            cmd = [sys.executable, __file__, "--worker", v, "--device", args.device, "--batch", str(args.batch),
                   "--frames", str(args.frames), "--arch", args.arch, "--side-dim", str(args.side_dim),
                   "--local-frames", str(args.local_frames), "--classes", str(args.classes),
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
                   "--authors-repo", args.authors_repo]  # fmt: skip
            print(f"[{v}] round {r + 1}/{args.rounds} running ...", file=sys.stderr, flush=True)
            env = os.environ.copy()
            if not args.glibc_default_malloc:
                env.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(proc.stderr[-3000:], file=sys.stderr)
                continue
            runs[v].append(json.loads(line[len("RESULT ") :]))
    for v, rs in runs.items():
        if not rs:
            results[v] = {"variant": v, "error": "no successful run"}
            continue
        steps = sorted(x["step_s"] for x in rs)
        results[v] = dict(rs[-1])
        results[v]["step_s"] = steps[len(steps) // 2]  # median over rounds
        results[v]["step_s_rounds"] = [x["step_s"] for x in rs]
        for key in ("peak_rss_bytes", "cuda_max_allocated_bytes"):
            if key in rs[0]:
                results[v][key] = max(x[key] for x in rs)

    mem_key = "cuda_max_allocated_bytes" if args.device.startswith("cuda") else "peak_rss_bytes"
    ref = results.get("full", {}).get(mem_key)
    ref_t = results.get("full", {}).get("step_s")
    print(
        f"\nTraining step, ViT-{args.arch.upper()}, batch {args.batch} x {args.frames} frames, {args.device}, fp32"
    )
    print(
        f"{'variant':<10} {'trainable':>12} {'peak GB':>8} {'x full':>7} {'step s':>8} {'x full':>7}"
    )
    for v, r in results.items():
        if "error" in r:
            print(f"{v:<10} {r['error']}")
            continue
        mem = r[mem_key]
        r["memory_ratio_vs_full"] = mem / ref if ref else None
        r["time_ratio_vs_full"] = r["step_s"] / ref_t if ref_t else None
        mr = f"{mem / ref:.2f}" if ref else "-"
        tr = f"{r['step_s'] / ref_t:.2f}" if ref_t else "-"
        print(
            f"{v:<10} {r['trainable_params']:>12,} {_fmt_gb(mem):>8} {mr:>7} {r['step_s']:>8.2f} {tr:>7}"
        )

    from sidetune.utils.io import write_json

    write_json(
        args.out,
        {
            "settings": {k: getattr(args, k) for k in ("device", "batch", "frames", "arch", "side_dim",
                                                       "local_frames", "classes", "steps", "warmup", "threads",
                                                       "glibc_default_malloc", "rounds")},
            "memory_metric": mem_key,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "results": results,
        },
    )  # fmt: skip
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
