"""Speed of intermediate-feature extraction: InternVideo2-1B and CLIP ViT-B/16 (frames/s).

Three measurements, each a row of bench/results/extract.json (written atomically):

1. backbone: for each backbone and device (CPU always, CUDA when available), random weights
   (speed does not depend on the values), ``forward_intermediates`` on random clips —
   InternVideo2: 4 frames per clip input, CLIP: 1 frame per clip — K = 4 last layers,
   ``adaptive`` pooling, as ``sidetune extract`` runs it (fp32 on CPU; fp32 weights under
   bf16 autocast on CUDA). frames/s and clips/s. On CUDA, InternVideo2 rows also give the model's
   multiply-accumulates per clip (counted from the config: 2.5 TMAC for an 8-frame 224-px
   1B clip) and the fraction of the GPU's bf16 matmul roofline reached, the roofline being a
   measured 8192^3 bf16 matmul.
2. decode: PyAV decode + the official eval transform of a generated 640x360 30 fps H.264
   video into 2-s clips of 4 frames, in this process.
3. pipeline: the real ``run_extraction`` on generated videos for each backbone, with its
   decode time and backbone time measured separately on the same clips, so the share of
   decoding vs the backbone is known, and the end-to-end frames/s with ``--workers`` decoding
   processes.

    python bench/bench_extract.py [--backbones internvideo2-1b,clip-vit-b16] [--cpu-clips 1]
        [--cuda-clips 32] [--iters 2] [--no-cuda] [--pipeline-seconds 4] [--workers 1]
        [--out bench/results/extract.json]

CPU numbers on a shared 2-core machine are only indicative; InternVideo2-1B needs ~6 GB RAM.
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
from sidetune.backbones.base import VideoBackbone
from sidetune.features.decoding import ClipStream
from sidetune.features.extract import ExtractConfig, autocast_for, encode_clips, run_extraction
from sidetune.utils.io import write_json
from sidetune.video.decode import iter_clips
from sidetune.video.transforms import video_transform

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
        macs = clip_macs(model, fpc)
        if macs is not None:
            peak = matmul_macs_per_s(device)
            row["tmac_per_clip"] = macs / 1e12
            row["matmul_roofline_tmac_per_s"] = peak / 1e12
            row["roofline_frames_per_s"] = peak / macs * fpc
            row["roofline_fraction"] = row["clips_per_s"] * macs / peak
    return row


def clip_macs(model: VideoBackbone, frames: int) -> float | None:
    """Multiply-accumulates of one InternVideo2 clip through the blocks up to the last layer.

    Per block with n = 1 + T*(S/14)^2 tokens: qkv 3nd^2, output projection nd^2, MLP 2ndh,
    attention scores + weighted sum 2n^2 d. (Patch embedding and the pool are < 1 %.)
    """
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(cfg, "mlp_hidden_dim"):
        return None
    d, h = cfg.embed_dim, cfg.mlp_hidden_dim
    n = 1 + frames // cfg.tubelet_size * cfg.grid**2
    per_block = 4 * n * d * d + 2 * n * d * h + 2 * n * n * d
    return float(per_block * cfg.depth)


def matmul_macs_per_s(device: torch.device, size: int = 8192, iters: int = 20) -> float:
    """Measured bf16 matmul throughput (MAC/s) of ``device``: the roofline for the model."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    times, _ = time_calls(lambda: a @ b, iters, 3, device)
    return size**3 / statistics.median(times)


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
        transform = video_transform("eval")
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


def bench_pipeline(
    name: str, device: torch.device, seconds: int, workers: int, batch: int
) -> dict[str, Any]:
    """``run_extraction`` on two generated videos; decode and backbone timed apart too."""
    fpc = FRAMES_PER_CLIP.get(name, 1)
    model = create_backbone(name, frames_per_clip=fpc).to(device)
    layers = model.resolve_layers(None)
    with tempfile.TemporaryDirectory() as tmp:
        videos = Path(tmp) / "videos"
        videos.mkdir()
        for i in range(2):
            make_test_video(videos / f"v{i}.mp4", seconds=seconds)
        jobs = [(p.stem, p) for p in sorted(videos.glob("*.mp4"))]
        stream = ClipStream(
            jobs, clip_length=2.0, frames_per_clip=fpc, transform=model.transform, batch_size=batch
        )
        t0 = time.perf_counter()
        chunks = [c.frames for c in stream if c.frames is not None]
        decode_s = time.perf_counter() - t0
        clips = sum(int(c.shape[0]) for c in chunks)
        _sync(device)
        t0 = time.perf_counter()
        for c in chunks:
            encode_clips(model, c, layers, "adaptive", device, amp=True)
        _sync(device)
        backbone_s = time.perf_counter() - t0
        cfg = ExtractConfig(
            out=Path(tmp) / "out", videos=videos, dataset="qvhighlights", text=False,
            batch_size=batch, device=str(device), progress=False, workers=workers,
        )  # fmt: skip
        t0 = time.perf_counter()
        summary = run_extraction(cfg, model)
        _sync(device)
        e2e_s = time.perf_counter() - t0
    frames = clips * fpc
    return {
        "backbone": name,
        "device": str(device),
        "videos": 2,
        "video_seconds": seconds,
        "clips": clips,
        "frames": frames,
        "workers": workers,
        "decode_s": decode_s,
        "backbone_s": backbone_s,
        "decode_share": decode_s / (decode_s + backbone_s),
        "backbone_share": backbone_s / (decode_s + backbone_s),
        "decode_frames_per_s": frames / decode_s,
        "backbone_frames_per_s": frames / backbone_s,
        "end_to_end_s": e2e_s,
        "end_to_end_frames_per_s": frames / e2e_s,
        "videos_done": summary.videos_done,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backbones", default="internvideo2-1b,clip-vit-b16")
    parser.add_argument("--cpu-clips", type=int, default=1, help="clips per batch on CPU")
    parser.add_argument("--cuda-clips", type=int, default=32, help="clips per batch on CUDA")
    parser.add_argument("--iters", type=int, default=2, help="timed iterations (CUDA: 10x this)")
    parser.add_argument("--no-cuda", action="store_true")
    parser.add_argument("--no-decode", action="store_true")
    parser.add_argument("--no-pipeline", action="store_true")
    parser.add_argument("--no-backbone", action="store_true", help="skip the backbone-only rows")
    parser.add_argument(
        "--pipeline-seconds", type=int, default=4, help="length of each generated video"
    )
    parser.add_argument("--workers", type=int, default=1, help="decoding processes (pipeline)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "extract.json"))
    args = parser.parse_args()
    torch.manual_seed(0)

    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.no_cuda:
        devices.append(torch.device("cuda"))
    rows = []
    for name in (
        [] if args.no_backbone else [n.strip() for n in args.backbones.split(",") if n.strip()]
    ):
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
    pipeline = []
    if not args.no_pipeline:
        for name in [n.strip() for n in args.backbones.split(",") if n.strip()]:
            for dev in devices:
                batch = args.cuda_clips if dev.type == "cuda" else max(args.cpu_clips, 2)
                print(f"... pipeline {name} on {dev}", file=sys.stderr, flush=True)
                pipeline.append(
                    bench_pipeline(name, dev, args.pipeline_seconds, args.workers, batch)
                )

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
    for r in rows:
        if "roofline_fraction" in r:
            print(
                f"{r['backbone']} on {r['device']}: {r['tmac_per_clip']:.2f} TMAC/clip, "
                f"{r['frames_per_s']:.0f} frames/s = {100 * r['roofline_fraction']:.0f}% of the "
                f"bf16 matmul roofline ({r['roofline_frames_per_s']:.0f} frames/s)"
            )
    for p in pipeline:
        print(
            f"pipeline {p['backbone']:<16} {p['device']:<6} {p['clips']} clips: decode "
            f"{100 * p['decode_share']:.0f}% / backbone {100 * p['backbone_share']:.0f}% of the "
            f"serial time; end to end {p['end_to_end_frames_per_s']:.2f} frames/s "
            f"({p['workers']} decode workers)"
        )
    result = {
        "benchmark": "intermediate-feature extraction speed (random weights, K=4 last layers, adaptive pooling)",
        "backbones": rows,
        "decode": decode,
        "pipeline": pipeline,
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
