"""Extraction pipeline: raw videos + queries -> K intermediate-layer feature files.

Output layout (what SDST trains on, see :mod:`sidetune.features.store`)::

    OUT/video_features/{vid}.npz      key "features",          [K, T, F_v] float16
    OUT/text_features/qid{qid}.npz    key "last_hidden_state", [K, L, F_t] float16 (real tokens only)
    OUT/extract_meta.json             backbone, layers, pooling, clip length, dims (checked on resume)
    OUT/extract_failures.json         {vid: reason} of videos that could not be read

Each video is decoded in a background thread as a stream of clip batches
(:func:`sidetune.video.decode.iter_clips`), so decoding overlaps the forward passes and a long
video is never fully in memory. Finished files are skipped on the next run (resume); every
file is written atomically, so an interrupted run leaves no half-written feature.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from sidetune.backbones.base import Pool, TextBackbone, VideoBackbone, check_pool
from sidetune.errors import SidetuneError
from sidetune.features.store import save_text_features, save_video_features
from sidetune.utils.io import write_json
from sidetune.video.decode import VIDEO_EXTENSIONS, VideoDecodeError, iter_clips

VIDEO_DIR = "video_features"
TEXT_DIR = "text_features"
META_FILE = "extract_meta.json"
FAILURES_FILE = "extract_failures.json"

# Seconds per clip by dataset (the SDST paper: 0.5 fps for QVHighlights / TACoS, 1 fps Charades-STA).
DATASET_CLIP_LENGTH: dict[str, float] = {"qvhighlights": 2.0, "tacos": 2.0, "charades": 1.0}
_DATASET_ALIASES = {"qvh": "qvhighlights", "charades_sta": "charades", "charades-sta": "charades"}

T = TypeVar("T")


class ExtractError(SidetuneError, ValueError):
    """Bad extraction input (annotation line, directory, option); names the file / field."""


@dataclass
class ExtractConfig:
    """Options of one extraction run (the ``sidetune extract`` flags)."""

    out: Path
    videos: Path | None = None
    annotations: Sequence[Path] = ()
    layers: Sequence[int] | None = None  # None: the last 4 blocks
    text_layers: Sequence[int] | None = None  # None: the last K text layers, K = len(layers)
    pool: Pool = "adaptive"
    dataset: str | None = None
    clip_length: float | None = None
    frames_per_clip: int | None = None
    batch_size: int = 32  # clips per forward pass
    text_batch_size: int = 64
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA
    video: bool = True
    text: bool = True
    project_text: bool = False
    overwrite: bool = False
    progress: bool = True


@dataclass
class ExtractSummary:
    videos_done: int = 0
    videos_skipped: int = 0
    videos_failed: dict[str, str] = field(default_factory=dict)
    queries_done: int = 0
    queries_skipped: int = 0
    clips: int = 0
    seconds: float = 0.0
    failures_path: Path | None = None

    def lines(self) -> list[str]:
        rate = self.videos_done / self.seconds if self.seconds > 0 else 0.0
        out = [
            f"videos: {self.videos_done} extracted ({self.clips} clips, {rate:.2f} videos/s), "
            f"{self.videos_skipped} already done, {len(self.videos_failed)} failed",
        ]
        if self.queries_done or self.queries_skipped:
            out.append(
                f"queries: {self.queries_done} extracted, {self.queries_skipped} already done"
            )
        for vid, reason in list(self.videos_failed.items())[:20]:
            out.append(f"  failed {vid}: {reason}")
        if len(self.videos_failed) > 20:
            out.append(f"  ... and {len(self.videos_failed) - 20} more")
        if self.failures_path is not None and self.videos_failed:
            out.append(f"failures written to {self.failures_path}")
        return out


@dataclass(frozen=True)
class Query:
    qid: int | str
    vid: str
    text: str


def resolve_clip_length(dataset: str | None, clip_length: float | None) -> float:
    """Explicit ``clip_length`` wins; else the dataset's (QVHighlights/TACoS 2 s, Charades 1 s)."""
    if clip_length is not None:
        if clip_length <= 0:
            raise ExtractError(f"--clip-length must be > 0, got {clip_length}")
        return float(clip_length)
    if dataset is None:
        return DATASET_CLIP_LENGTH["qvhighlights"]
    key = _DATASET_ALIASES.get(dataset.lower(), dataset.lower())
    if key not in DATASET_CLIP_LENGTH:
        raise ExtractError(
            f"unknown dataset {dataset!r} (choose from {', '.join(DATASET_CLIP_LENGTH)})"
        )
    return DATASET_CLIP_LENGTH[key]


def read_queries(paths: Iterable[Path]) -> list[Query]:
    """``qid`` / ``vid`` / ``query`` of every line of the annotation jsonl files (deduplicated by qid)."""
    seen: dict[str, Query] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ExtractError(f"{path}: annotation file does not exist")
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ExtractError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc
                if not isinstance(row, dict):
                    raise ExtractError(f"{path}:{lineno}: expected a JSON object")
                for key in ("qid", "vid", "query"):
                    if key not in row:
                        raise ExtractError(f"{path}:{lineno}: missing field {key!r}")
                if not isinstance(row["query"], str):
                    raise ExtractError(f"{path}:{lineno}: field 'query' must be a string")
                q = Query(qid=row["qid"], vid=str(row["vid"]), text=row["query"])
                seen.setdefault(str(q.qid), q)
    return list(seen.values())


def index_videos(videos_dir: Path) -> dict[str, Path]:
    """``{stem: path}`` of the video files in ``videos_dir`` (mp4 preferred over other suffixes)."""
    if not videos_dir.is_dir():
        raise ExtractError(f"{videos_dir}: video directory does not exist")
    rank = {ext: i for i, ext in enumerate(VIDEO_EXTENSIONS)}
    found: dict[str, Path] = {}
    for entry in os.scandir(videos_dir):
        p = Path(entry.path)
        ext = p.suffix.lower()
        if ext not in rank or not entry.is_file():
            continue
        # QVHighlights vids contain dots ("NUsG9BgSes0_210.0_360.0"): strip only the suffix.
        stem = p.name[: -len(p.suffix)]
        if stem not in found or rank[ext] < rank[found[stem].suffix.lower()]:
            found[stem] = p
    return found


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ExtractError(f"--device: bad device {device!r} ({exc})") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ExtractError(f"--device {device}: CUDA is not available on this machine")
    return dev


def autocast_for(device: torch.device, amp: bool) -> AbstractContextManager[Any]:
    """bf16 autocast on GPU (the frozen backbone runs in bf16); full precision on CPU."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` in a background thread, up to ``depth`` items ahead.

    PyAV releases the GIL while decoding, so decode + resize overlap the forward pass.
    Exceptions raised by the producer are re-raised in the consumer.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as exc:  # handed to the consumer thread
            q.put(("error", exc))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # drain so a blocked producer can finish
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


@torch.no_grad()
def extract_video_features(
    backbone: VideoBackbone,
    path: Path,
    *,
    clip_length: float,
    frames_per_clip: int,
    layers: Sequence[int],
    pool: Pool,
    batch_size: int,
    device: torch.device,
    amp: bool = True,
    on_clips: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Features of one video: ``[K, T, F]`` float32, one vector per ``clip_length``-second clip.

    ``on_clips(n)`` is called after each batch of ``n`` clips (progress inside a long video).
    """
    chunks = iter_clips(
        path, clip_length, frames_per_clip, transform=backbone.transform, chunk_size=batch_size
    )
    outputs: list[torch.Tensor] = []
    for chunk in prefetch(chunks):
        clips = chunk.frames.to(device, non_blocking=True)  # (C, N, 3, S, S)
        with autocast_for(device, amp):
            feats = backbone.forward_intermediates(clips, layers, pool)  # (K, C, F)
        outputs.append(feats.float().cpu())
        if on_clips is not None:
            on_clips(int(clips.shape[0]))
    return torch.cat(outputs, dim=1).numpy()


@torch.no_grad()
def extract_text_features(
    text_backbone: TextBackbone,
    queries: Sequence[Query],
    *,
    layers: Sequence[int],
    batch_size: int,
    device: torch.device,
    amp: bool = True,
    project: bool = False,
) -> Iterator[tuple[Query, np.ndarray]]:
    """``(query, [K, L, F] float32)`` per query; ``L`` counts real tokens only (padding dropped)."""
    for start in range(0, len(queries), batch_size):
        batch = queries[start : start + batch_size]
        enc = text_backbone.tokenize([q.text for q in batch])
        ids = enc["input_ids"].to(device)
        mask = enc["attention_mask"].to(device)
        with autocast_for(device, amp):
            hidden, valid = text_backbone.forward_intermediates(ids, mask, layers, project=project)
        hidden = hidden.float().cpu()
        lengths = valid.sum(1).cpu().tolist()
        for i, q in enumerate(batch):
            yield q, hidden[:, i, : int(lengths[i])].numpy()


def text_layer_choice(cfg: ExtractConfig) -> Sequence[int] | None:
    """Explicit ``text_layers``, else the last K text layers with K = the number of video layers.

    (Video and text towers differ in depth, e.g. 40 vs 19, so block numbers do not transfer.)
    """
    if cfg.text_layers is not None:
        return cfg.text_layers
    if cfg.layers is None:
        return None
    return list(range(-len(cfg.layers), 0))


def _meta(
    cfg: ExtractConfig,
    backbone: VideoBackbone | None,
    text: TextBackbone | None,
    clip_length: float,
    fpc: int,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"clip_length": clip_length, "frames_per_clip": fpc, "pool": cfg.pool}
    if backbone is not None:
        meta["backbone"] = backbone.name
        meta["layers"] = backbone.resolve_layers(cfg.layers)
        meta["video_dim"] = backbone.feature_dim(cfg.pool)
    if text is not None:
        meta["text_backbone"] = text.name
        meta["text_layers"] = text.resolve_layers(text_layer_choice(cfg))
        meta["text_dim"] = text.feature_dim(cfg.project_text)
    return meta


def _check_meta(path: Path, meta: dict[str, Any], overwrite: bool) -> None:
    """Refuse to mix features of different settings in one output directory."""
    if overwrite or not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return
    diff = {k: (old.get(k), v) for k, v in meta.items() if k in old and old.get(k) != v}
    if diff:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise ExtractError(
            f"{path}: this output directory holds features made with other settings ({detail}); "
            "use another --out or pass --overwrite"
        )


def run_extraction(
    cfg: ExtractConfig,
    backbone: VideoBackbone | None,
    text_backbone: TextBackbone | None = None,
    log: Callable[[str], None] = print,
) -> ExtractSummary:
    """Extract every video and query named by ``cfg``; skip finished files; record failures."""
    t0 = time.perf_counter()
    pool = check_pool(cfg.pool)
    clip_length = resolve_clip_length(cfg.dataset, cfg.clip_length)
    device = pick_device(cfg.device)
    do_video = cfg.video and backbone is not None
    do_text = cfg.text and text_backbone is not None
    fpc = cfg.frames_per_clip or (backbone.frames_per_clip if backbone is not None else 1)
    queries = read_queries(cfg.annotations) if cfg.annotations else []
    if do_text and not queries:
        raise ExtractError("text features need --annotations (a jsonl with qid / vid / query)")

    out = Path(cfg.out)
    video_dir, text_dir = out / VIDEO_DIR, out / TEXT_DIR
    meta = _meta(
        cfg, backbone if do_video else None, text_backbone if do_text else None, clip_length, fpc
    )
    _check_meta(out / META_FILE, meta, cfg.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    old_meta: dict[str, Any] = {}
    if (out / META_FILE).is_file() and not cfg.overwrite:
        try:
            old_meta = json.loads((out / META_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old_meta = {}
    write_json(out / META_FILE, {**old_meta, **meta})

    summary = ExtractSummary(failures_path=out / FAILURES_FILE)
    if do_video:
        assert backbone is not None
        if cfg.videos is None:
            raise ExtractError("video features need --videos DIR")
        index = index_videos(Path(cfg.videos))
        vids = list(dict.fromkeys(q.vid for q in queries)) if queries else sorted(index)
        backbone.to(device)
        layers = backbone.resolve_layers(cfg.layers)
        _extract_videos(
            cfg,
            backbone,
            vids,
            index,
            video_dir,
            layers,
            pool,
            clip_length,
            fpc,
            device,
            summary,
            log,
        )
        write_json(out / FAILURES_FILE, summary.videos_failed)
    if do_text:
        assert text_backbone is not None
        text_backbone.to(device)
        layers_t = text_backbone.resolve_layers(text_layer_choice(cfg))
        todo = [q for q in queries if cfg.overwrite or not (text_dir / f"qid{q.qid}.npz").is_file()]
        summary.queries_skipped = len(queries) - len(todo)
        bar = _progress(total=len(todo), unit="query", desc="text", enabled=cfg.progress)
        for q, feats in extract_text_features(
            text_backbone, todo, layers=layers_t, batch_size=cfg.text_batch_size, device=device,
            amp=cfg.amp, project=cfg.project_text,
        ):  # fmt: skip
            save_text_features(text_dir, q.qid, feats)
            summary.queries_done += 1
            bar.update(1)
        bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _extract_videos(
    cfg: ExtractConfig,
    backbone: VideoBackbone,
    vids: Sequence[str],
    index: dict[str, Path],
    video_dir: Path,
    layers: list[int],
    pool: Pool,
    clip_length: float,
    fpc: int,
    device: torch.device,
    summary: ExtractSummary,
    log: Callable[[str], None],
) -> None:
    bar = _progress(total=len(vids), unit="video", desc="video", enabled=cfg.progress)
    for n_vid, vid in enumerate(vids, start=1):
        if not cfg.overwrite and (video_dir / f"{vid}.npz").is_file():
            summary.videos_skipped += 1
            bar.update(1)
            continue
        path = index.get(vid)
        if path is None:
            summary.videos_failed[vid] = (
                f"no video file {vid}.{{{','.join(e[1:] for e in VIDEO_EXTENSIONS)}}} in {cfg.videos}"
            )
            bar.update(1)
            continue
        clip_bar = _clip_progress(path, vid, clip_length, cfg.progress)
        started = time.perf_counter()
        try:
            feats = extract_video_features(
                backbone, path, clip_length=clip_length, frames_per_clip=fpc, layers=layers, pool=pool,
                batch_size=cfg.batch_size, device=device, amp=cfg.amp, on_clips=clip_bar.update,
            )  # fmt: skip
        except VideoDecodeError as exc:
            summary.videos_failed[vid] = str(exc)
            if not cfg.progress:
                log(f"failed: {exc}")
            bar.update(1)
            continue
        finally:
            clip_bar.close()
        if not cfg.progress:  # e.g. output to a log file: one line per video
            log(
                f"video {n_vid}/{len(vids)} {vid}: {feats.shape[1]} clips in "
                f"{time.perf_counter() - started:.1f} s"
            )
        save_video_features(video_dir, vid, feats)
        summary.videos_done += 1
        summary.clips += feats.shape[1]
        bar.update(1)
    bar.close()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _clip_progress(path: Path, vid: str, clip_length: float, enabled: bool) -> Any:
    """A second bar, inside the per-video one, over the clips of one (long) video."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    from sidetune.video.decode import probe
    from sidetune.video.sampling import num_clips_for

    try:
        total: int | None = num_clips_for(probe(path).duration, clip_length)
    except VideoDecodeError:
        total = None  # the extraction itself reports the file
    return tqdm(total=total, unit="clip", desc=vid, leave=False, position=1, dynamic_ncols=True)


def _progress(total: int, unit: str, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True)


def config_dict(cfg: ExtractConfig) -> dict[str, Any]:
    """JSON-friendly view of a config (for logs)."""
    d = asdict(cfg)
    return {
        k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if k == "annotations" else v)
        for k, v in d.items()
    }
