"""Speed of intermediate-feature extraction: InternVideo2-1B and CLIP ViT-B/16 (frames/s).

For each backbone and device (CPU always, CUDA when available) it builds the backbone with
random weights (speed does not depend on the values), runs ``forward_intermediates`` on random
clips — InternVideo2: 4 frames per clip input, CLIP: 1 frame per clip — with the default K = 4
last layers and the ``adaptive`` pooling, exactly as ``sidetune extract`` does (fp32 weights,
bf16 autocast on CUDA), and reports frames/s and clips/s. It also times the decoding side
(PyAV decode + resize/crop/normalise of a generated 640x360 30 fps video into 2-s clips of 4
frames). Prints a table; writes bench/results/extract.json atomically.

    python bench/bench_extract.py [--backbones internvideo2-1b,clip-vit-b16] [--cpu-clips 1]
        [--cuda-clips 32] [--iters 2] [--no-cuda] [--out bench/results/extract.json]

CPU numbers on a shared 2-core machine are only indicative; InternVideo2-1B needs ~4 GB RAM.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidetune.backbones import create_backbone
from sidetune.features.extract import autocast_for
from sidetune.utils.io import write_json
from sidetune.video.decode import iter_clips
from sidetune.video.transforms import VideoTransform

REPO = Path(__file__).resolve().parents[1]
FRAMES_PER_CLIP = {
    "internvideo2-1b": 4,
    "internvideo2-6b": 4,
    "clip-vit-b16": 1,
    "clip-vit-b32": 1,
    "clip-vit-l14": 1,
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    fn: Callable[[], Any], iters: int, warmup: int, device: torch.device
) -> tuple[list[float], Any]:
    """Seconds of each timed call (after ``warmup`` untimed ones) and the last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    _sync(device)
    times = []
    for _ in range(max(1, iters)):
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times, out


def bench_backbone(
    name: str, device: torch.device, clips: int, iters: int, warmup: int
) -> dict[str, Any]:
    fpc = FRAMES_PER_CLIP.get(name, 1)
    t0 = time.perf_counter()
    model = create_backbone(name, frames_per_clip=fpc).to(device)
    build_s = time.perf_counter() - t0
    size = model.transform.size
    x = torch.randn(clips, fpc, 3, size, size, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    @torch.no_grad()
    def step() -> torch.Tensor:
        with autocast_for(device, amp=True):
            return model.forward_intermediates(x, None, "adaptive")

    times, out = time_calls(step, iters, warmup, device)
    med = statistics.median(times)
    row: dict[str, Any] = {
        "backbone": name,
        "device": str(device),
        "precision": "bf16-autocast" if device.type == "cuda" else "fp32",
        "clips_per_batch": clips,
        "frames_per_clip": fpc,
        "layers": model.resolve_layers(None),
        "feature_dim": model.feature_dim("adaptive"),
        "iters": iters,
        "seconds_median": med,
        "frames_per_s": clips * fpc / med,
        "clips_per_s": clips / med,
        "build_s": build_s,
        "out_shape": list(out.shape),  # (K, clips, F)
    }
    if device.type == "cuda":
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


def make_test_video(
    path: Path, seconds: int = 10, fps: int = 30, size: tuple[int, int] = (640, 360)
) -> None:
    import av

    width, height = size
    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        base = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(np.roll(base, i * 4, axis=1), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def bench_decode(seconds: int, iters: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.mp4"
        make_test_video(path, seconds=seconds)
        transform = VideoTransform(size=224)
        n_clips = 0

        def run() -> None:
            nonlocal n_clips
            n_clips = sum(
                c.frames.shape[0]
                for c in iter_clips(path, 2.0, 4, transform=transform, chunk_size=16)
            )

        times, _ = time_calls(run, iters, 0, torch.device("cpu"))
    med = statistics.median(times)
    return {
        "stage": "decode+transform (PyAV, 640x360 30 fps H.264, 2-s clips x 4 frames -> 224)",
        "video_seconds": seconds,
        "clips": n_clips,
        "seconds_median": med,
        "clips_per_s": n_clips / med,
        "sampled_frames_per_s": n_clips * 4 / med,
        "decoded_frames_per_s": seconds * 30 / med,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backbones", default="internvideo2-1b,clip-vit-b16")
    parser.add_argument("--cpu-clips", type=int, default=1, help="clips per batch on CPU")
    parser.add_argument("--cuda-clips", type=int, default=32, help="clips per batch on CUDA")
    parser.add_argument("--iters", type=int, default=2, help="timed iterations (CUDA: 10x this)")
    parser.add_argument("--no-cuda", action="store_true")
    parser.add_argument("--no-decode", action="store_true")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "extract.json"))
    args = parser.parse_args()
    torch.manual_seed(0)

    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.no_cuda:
        devices.append(torch.device("cuda"))
    rows = []
    for name in [n.strip() for n in args.backbones.split(",") if n.strip()]:
        for dev in devices:
            cuda = dev.type == "cuda"
            clips = args.cuda_clips if cuda else args.cpu_clips
            iters = args.iters * 10 if cuda else args.iters
            print(
                f"... {name} on {dev} ({clips} clips/batch, {iters} iters)",
                file=sys.stderr,
                flush=True,
            )
            rows.append(bench_backbone(name, dev, clips, iters, warmup=2 if cuda else 0))
    decode = None if args.no_decode else bench_decode(seconds=10, iters=2)

    print(
        f"{'backbone':<18} {'device':<6} {'precision':<14} {'clips':>5} {'N':>2} {'s/batch':>9} {'frames/s':>9} {'clips/s':>8}"
    )
    for r in rows:
        print(
            f"{r['backbone']:<18} {r['device']:<6} {r['precision']:<14} {r['clips_per_batch']:>5} "
            f"{r['frames_per_clip']:>2} {r['seconds_median']:>9.3f} {r['frames_per_s']:>9.2f} {r['clips_per_s']:>8.2f}"
        )
    if decode is not None:
        print(
            f"decode+transform: {decode['clips_per_s']:.1f} clips/s "
            f"({decode['decoded_frames_per_s']:.0f} decoded frames/s, {decode['sampled_frames_per_s']:.0f} sampled frames/s)"
        )
    result = {
        "benchmark": "intermediate-feature extraction speed (random weights, K=4 last layers, adaptive pooling)",
        "backbones": rows,
        "decode": decode,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
