"""``sidetune synth recognition --out DIR``: a motion-only action-recognition benchmark.

Procedurally rendered mp4 videos (PyAV, H.264) whose classes differ only in *motion*, never in
appearance: every video shows the same kind of randomly textured blob(s) on a randomly textured
background, and classes that share a direction axis show exactly the same set of frames in a
different order. A model that pools frames without temporal modelling is at chance within
each pair; telling them apart needs order / motion.

Classes (``labels.csv``):

0 moving left to right            1 moving right to left
2 moving top to bottom            3 moving bottom to top
4 flash on the left, then on the right
5 flash on the right, then on the left

The names make the horizontal-flip label swap automatic (0 <-> 1, 4 <-> 5). Files written::

    DIR/videos/{train,val}_{i:05d}.mp4
    DIR/train.txt, DIR/val.txt     # "videos/<file>.mp4 <label>" (paths relative to DIR)
    DIR/labels.csv                 # "id,name"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sidetune.errors import SidetuneError
from sidetune.utils.io import atomic_open
from sidetune.video.encode import write_mp4

CLASS_NAMES: tuple[str, ...] = (
    "moving left to right",
    "moving right to left",
    "moving top to bottom",
    "moving bottom to top",
    "flash on the left, then on the right",
    "flash on the right, then on the left",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--train-per-class", type=int, default=32)
    parser.add_argument("--val-per-class", type=int, default=16)
    parser.add_argument("--frames", type=int, default=24, help="frames per video")
    parser.add_argument("--size", type=int, default=48, help="frame height and width (even)")
    parser.add_argument("--fps", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)


def _smooth_texture(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency colour noise (h, w, 3) in [0, 1]: a random grid, bilinearly upsampled."""
    grid = rng.random((cells + 1, cells + 1, 3))
    ys = np.linspace(0, cells, h)
    xs = np.linspace(0, cells, w)
    y0 = np.minimum(ys.astype(int), cells - 1)
    x0 = np.minimum(xs.astype(int), cells - 1)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    g00 = grid[y0][:, x0]
    g01 = grid[y0][:, x0 + 1]
    g10 = grid[y0 + 1][:, x0]
    g11 = grid[y0 + 1][:, x0 + 1]
    return (
        g00 * (1 - fy) * (1 - fx) + g01 * (1 - fy) * fx + g10 * fy * (1 - fx) + g11 * fy * fx
    ).astype(np.float32)


def _ramp(frames: int, rng: np.random.Generator) -> np.ndarray:
    """Progress in [0, 1] per frame: still, linear motion over a random span, still."""
    t0 = rng.uniform(0.0, 0.2) * (frames - 1)
    t1 = rng.uniform(0.8, 1.0) * (frames - 1)
    return np.clip((np.arange(frames) - t0) / max(1e-6, t1 - t0), 0.0, 1.0)


def render_video(label: int, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One video of class ``label``: uint8 (frames, size, size, 3)."""
    h = w = size
    background = 0.25 + 0.5 * _smooth_texture(rng, h, w, 4)
    radius = rng.uniform(0.11, 0.16) * size
    blob_tex = _smooth_texture(rng, h, w, 3)
    blob_tex = 0.5 * blob_tex + 0.5 * rng.random(3).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    margin = radius + 1.0
    lo, hi = margin, size - 1 - margin

    # centres (frames, k, 2) as (y, x) and visibility (frames, k)
    if label < 4:
        p = _ramp(frames, rng)
        forward = label in (0, 2)
        a = lo + rng.uniform(0, 0.1) * size
        b = hi - rng.uniform(0, 0.1) * size
        along = a + (b - a) * (p if forward else 1.0 - p)
        across = np.full(frames, rng.uniform(lo, hi)) + rng.normal(0, 0.5, frames)
        yx = np.stack([across, along], -1) if label < 2 else np.stack([along, across], -1)
        centres = yx[:, None, :]
        visible = np.ones((frames, 1), dtype=bool)
    else:
        left = np.array([rng.uniform(lo, hi), rng.uniform(lo, 0.4 * size)])
        right = np.array([rng.uniform(lo, hi), rng.uniform(0.6 * size, hi)])
        first, second = (left, right) if label == 4 else (right, left)
        centres = np.broadcast_to(np.stack([first, second])[None], (frames, 2, 2))
        cut = [0, *sorted(rng.uniform(0.1, 0.9, 3) * frames), frames]
        t = np.arange(frames)
        visible = np.stack([(t >= cut[1]) & (t < cut[2]), (t >= cut[2]) & (t < cut[3])], -1)
        if not visible[:, 0].any() or not visible[:, 1].any():  # keep both flashes non-empty
            mid = frames // 2
            visible = np.stack(
                [(t >= frames // 6) & (t < mid), (t >= mid) & (t < 5 * frames // 6)], -1
            )

    dy = yy[None, None] - centres[..., 0, None, None]
    dx = xx[None, None] - centres[..., 1, None, None]
    soft = np.clip(radius - np.sqrt(dy * dy + dx * dx) + 0.5, 0.0, 1.0)  # anti-aliased disks
    alpha = (soft * visible[..., None, None]).max(axis=1)[..., None]  # (F, H, W, 1)
    video = background[None] * (1 - alpha) + blob_tex[None] * alpha
    video = video + rng.normal(0, 0.02, video.shape)
    return (np.clip(video, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def generate(
    out: str | Path,
    train_per_class: int = 32,
    val_per_class: int = 16,
    frames: int = 24,
    size: int = 48,
    fps: int = 12,
    seed: int = 0,
) -> dict[str, Path]:
    """Write the benchmark to ``out``; returns the paths of ``train``, ``val`` and ``labels``."""
    if size % 2 or size < 16:
        raise SidetuneError(f"--size must be an even number >= 16 (H.264 4:2:0), got {size}")
    if frames < 8:
        raise SidetuneError(f"--frames must be >= 8, got {frames}")
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths: dict[str, Path] = {}
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        labels = np.repeat(np.arange(len(CLASS_NAMES)), per_class)
        rng.shuffle(labels)
        rows = []
        for i, label in enumerate(labels.tolist()):
            name = f"videos/{split}_{i:05d}.mp4"
            write_mp4(
                out / name, render_video(label, frames, size, rng), fps, crf=12, preset="veryfast"
            )
            rows.append(f"{name} {label}\n")
        paths[split] = out / f"{split}.txt"
        with atomic_open(paths[split], "w", encoding="utf-8") as fh:
            fh.writelines(rows)
    paths["labels"] = out / "labels.csv"
    with atomic_open(paths["labels"], "w", encoding="utf-8") as fh:
        fh.write("id,name\n")
        fh.writelines(f'{i},"{n}"\n' for i, n in enumerate(CLASS_NAMES))
    return paths


def run(args: argparse.Namespace) -> int:
    paths = generate(
        args.out,
        args.train_per_class,
        args.val_per_class,
        args.frames,
        args.size,
        args.fps,
        args.seed,
    )
    n_train = sum(1 for _ in paths["train"].open())
    n_val = sum(1 for _ in paths["val"].open())
    print(
        f"wrote {n_train} train + {n_val} val videos ({len(CLASS_NAMES)} motion classes) to {args.out}"
    )
    print(f"train: sidetune train tds_clip_synthetic data.root={args.out}")
    return 0
