"""Extraction pipeline: raw videos + queries -> K intermediate-layer feature files.

Output layout (what SDST trains on, see :mod:`sidetune.features.store`)::

    OUT/video_features/{vid}.npz      key "features",          [K, T, F_v] float16
    OUT/text_features/qid{qid}.npz    key "last_hidden_state", [K, L, F_t] float16 (real tokens only)
    OUT/extract_meta.json             backbone, layers, pooling, clip length, transform, GELU,
                                      text format, dims (checked on every run)
    OUT/extract_failures.json         {vid: reason} of videos that could not be read

Videos are decoded in worker processes (or a background thread) as batches of transformed
clips (:mod:`sidetune.features.decoding`), so decoding overlaps the forward passes and a long
video is never fully in memory. Finished files are skipped on the next run (resume), and the
backbones are only built when something is left to do; every file is written atomically.

Under ``torchrun`` (``WORLD_SIZE`` > 1) rank ``r`` of ``W`` takes videos ``r, r + W, ...`` and
queries likewise, of the same sorted-by-input lists on every rank; the failures of all ranks
are gathered into one ``extract_failures.json``. Files are per video / query, so the union of
the ranks' files is what one process would write, and a rerun after any rank died resumes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidetune.backbones.base import Pool, TextBackbone, VideoBackbone, check_pool
from sidetune.errors import SidetuneError
from sidetune.features.decoding import ClipStream, decoded_chunks, prefetch
from sidetune.features.extract_meta import check_meta, read_meta, text_meta, video_meta
from sidetune.features.progress import Progress
from sidetune.features.store import save_text_features, save_video_features
from sidetune.utils.io import write_json
from sidetune.video.decode import VIDEO_EXTENSIONS, iter_clips

VIDEO_DIR = "video_features"
TEXT_DIR = "text_features"
META_FILE = "extract_meta.json"
FAILURES_FILE = "extract_failures.json"

# Seconds per clip by dataset (the SDST paper: 0.5 fps for QVHighlights / TACoS, 1 fps Charades-STA).
DATASET_CLIP_LENGTH: dict[str, float] = {"qvhighlights": 2.0, "tacos": 2.0, "charades": 1.0}
_DATASET_ALIASES = {"qvh": "qvhighlights", "charades_sta": "charades", "charades-sta": "charades"}


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
    backbone: str | None = None  # name, needed when the backbone is passed as a factory
    transform: str | None = None  # "eval" | "demo" | "crop"; None: the backbone's default
    gelu: str | None = None  # recorded only: the GELU the factory builds ("erf" | "tanh")
    bf16: bool = False  # recorded only: the factories build bf16 weights (the official eval's)
    add_sep: bool = False  # text "[CLS] X [SEP]" (Hugging Face) instead of "[CLS] X" (official)
    pre_text: bool = False  # the official caption normalisation
    workers: int = 0  # decoding processes (0: a background thread)
    rank: int = 0  # this process's shard
    world_size: int = 1


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
    all_failed: dict[str, str] = field(default_factory=dict)  # every rank's failures

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


def pick_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when a GPU is visible, else CPU; ``cuda`` -> ``cuda:<local_rank>``."""
    if device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ExtractError(f"--device: bad device {device!r} ({exc})") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ExtractError(f"--device {device}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def autocast_for(device: torch.device, amp: bool) -> AbstractContextManager[Any]:
    """bf16 autocast on GPU (the frozen backbone runs in bf16); full precision on CPU."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def encode_clips(
    backbone: VideoBackbone,
    frames: torch.Tensor,
    layers: Sequence[int],
    pool: Pool,
    device: torch.device,
    amp: bool,
) -> torch.Tensor:
    """Transformed clips ``(C, N, 3, S, S)`` -> pooled features ``(K, C, F)`` float32 on CPU."""
    clips = frames.to(device, non_blocking=True)
    with autocast_for(device, amp):
        feats = backbone.forward_intermediates(clips, layers, pool)
    return feats.float().cpu()


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
    Raises :class:`~sidetune.video.decode.VideoDecodeError` for an unreadable video.
    """
    chunks = iter_clips(
        path, clip_length, frames_per_clip, transform=backbone.transform, chunk_size=batch_size
    )
    outputs: list[torch.Tensor] = []
    for chunk in prefetch(chunks):
        outputs.append(encode_clips(backbone, chunk.frames, layers, pool, device, amp))
        if on_clips is not None:
            on_clips(int(chunk.frames.shape[0]))
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


BackboneArg = VideoBackbone | Callable[[], VideoBackbone] | None
TextArg = TextBackbone | Callable[[], TextBackbone] | None


def _name_of(x: Any, fallback: str | None, what: str) -> VideoBackbone | TextBackbone | str:
    if isinstance(x, VideoBackbone | TextBackbone):
        return x
    if fallback is None:
        raise ExtractError(f"a {what} factory needs ExtractConfig.backbone (its name)")
    return fallback


def _build_meta(cfg: ExtractConfig, backbone: Any, text: Any, clip_length: float) -> dict[str, Any]:
    meta: dict[str, Any] = {"clip_length": clip_length, "pool": cfg.pool}
    if backbone is not None:
        meta.update(
            video_meta(
                _name_of(backbone, cfg.backbone, "video backbone"),  # type: ignore[arg-type]
                layers=cfg.layers,
                pool=cfg.pool,
                clip_length=clip_length,
                frames_per_clip=cfg.frames_per_clip,
                transform=cfg.transform,
                gelu=cfg.gelu,
                bf16=cfg.bf16,
            )
        )
    if text is not None:
        meta.update(
            text_meta(
                _name_of(text, cfg.backbone, "text backbone"),  # type: ignore[arg-type]
                layers=text_layer_choice(cfg),
                project=cfg.project_text,
                add_sep=cfg.add_sep,
                pre_text=cfg.pre_text,
            )
        )
    return meta


def shard(items: Sequence[Any], rank: int, world_size: int) -> list[Any]:
    """This rank's share of ``items``: every ``world_size``-th item from position ``rank``."""
    return list(items[rank::world_size])


def run_extraction(
    cfg: ExtractConfig,
    backbone: BackboneArg,
    text_backbone: TextArg = None,
    log: Callable[[str], None] = print,
    gather: Callable[[Any], list[Any]] | None = None,
) -> ExtractSummary:
    """Extract every video and query named by ``cfg`` (this rank's shard); skip finished files.

    ``backbone`` / ``text_backbone``: built modules, or zero-argument factories that are only
    called when there is something left to do (then ``cfg.backbone`` names the backbone).
    ``gather``: all-gather of a picklable object across ranks (``None``: one process); the
    failures of every rank are merged into ``extract_failures.json`` by rank 0.
    ``log``: where failures are reported as they happen when the progress bar is off.
    """
    t0 = time.perf_counter()
    check_pool(cfg.pool)
    clip_length = resolve_clip_length(cfg.dataset, cfg.clip_length)
    device = pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    do_video = cfg.video and backbone is not None
    do_text = cfg.text and text_backbone is not None
    queries = read_queries(cfg.annotations) if cfg.annotations else []
    if do_text and not queries:
        raise ExtractError("text features need --annotations (a jsonl with qid / vid / query)")
    if do_video and cfg.videos is None:
        raise ExtractError("video features need --videos DIR")

    out = Path(cfg.out)
    video_dir, text_dir = out / VIDEO_DIR, out / TEXT_DIR
    meta = _build_meta(
        cfg, backbone if do_video else None, text_backbone if do_text else None, clip_length
    )
    old_meta = {} if cfg.overwrite else read_meta(out / META_FILE)
    check_meta(out / META_FILE, meta, old_meta)
    if cfg.rank == 0:
        write_json(out / META_FILE, {**old_meta, **meta})

    summary = ExtractSummary(failures_path=out / FAILURES_FILE)
    if do_video:
        assert backbone is not None
        index = index_videos(Path(cfg.videos))  # type: ignore[arg-type]
        vids = list(dict.fromkeys(q.vid for q in queries)) if queries else sorted(index)
        mine = shard(vids, cfg.rank, cfg.world_size)
        todo = [v for v in mine if cfg.overwrite or not (video_dir / f"{v}.npz").is_file()]
        summary.videos_skipped = len(mine) - len(todo)
        exts = ",".join(e[1:] for e in VIDEO_EXTENSIONS)
        for vid in todo:
            if vid not in index:  # known to fail without building the backbone
                summary.videos_failed[vid] = f"no video file {vid}.{{{exts}}} in {cfg.videos}"
        jobs = [(vid, index[vid]) for vid in todo if vid in index]
        if jobs:
            model = backbone() if not isinstance(backbone, VideoBackbone) else backbone
            _extract_videos(cfg, model, jobs, video_dir, meta, clip_length, device, summary, log)
    if do_text:
        assert text_backbone is not None
        mine_q = shard(queries, cfg.rank, cfg.world_size)
        todo_q = [
            q for q in mine_q if cfg.overwrite or not (text_dir / f"qid{q.qid}.npz").is_file()
        ]
        summary.queries_skipped = len(mine_q) - len(todo_q)
        if todo_q:
            text = text_backbone() if not isinstance(text_backbone, TextBackbone) else text_backbone
            _extract_queries(cfg, text, todo_q, text_dir, device, summary)
    failures = summary.videos_failed
    if gather is not None:
        failures = {k: v for part in gather(summary.videos_failed) for k, v in part.items()}
    if do_video and cfg.rank == 0:
        write_json(out / FAILURES_FILE, dict(sorted(failures.items())))
    summary.all_failed = failures
    summary.seconds = time.perf_counter() - t0
    return summary


def _configure_text(cfg: ExtractConfig, text: TextBackbone) -> None:
    if hasattr(text, "add_sep"):
        setattr(text, "add_sep", cfg.add_sep)  # noqa: B010 (only InternVideo2's tower has it)
        setattr(text, "normalize_text", cfg.pre_text)  # noqa: B010
    elif cfg.add_sep or cfg.pre_text:
        raise ExtractError(f"{text.name}: --text-sep / --pre-text are InternVideo2 text options")


def _extract_queries(
    cfg: ExtractConfig,
    text: TextBackbone,
    todo: Sequence[Query],
    text_dir: Path,
    device: torch.device,
    summary: ExtractSummary,
) -> None:
    _configure_text(cfg, text)
    text.to(device)
    layers = text.resolve_layers(text_layer_choice(cfg))
    bar = Progress(len(todo), "query", "text", cfg.progress)
    for q, feats in extract_text_features(
        text, todo, layers=layers, batch_size=cfg.text_batch_size, device=device,
        amp=cfg.amp, project=cfg.project_text,
    ):  # fmt: skip
        save_text_features(text_dir, q.qid, feats)
        summary.queries_done += 1
        bar.update(1)
    bar.close()


def _extract_videos(
    cfg: ExtractConfig,
    backbone: VideoBackbone,
    jobs: Sequence[tuple[str, Path]],
    video_dir: Path,
    meta: dict[str, Any],
    clip_length: float,
    device: torch.device,
    summary: ExtractSummary,
    log: Callable[[str], None],
) -> None:
    """Decode ``jobs`` (vid, path) in workers, encode their clips in batches, save each video."""
    if cfg.transform is not None:
        backbone.transform = backbone.transform.preset(cfg.transform)
    backbone.to(device)
    layers, pool, fpc = meta["layers"], meta["pool"], meta["frames_per_clip"]
    bar = Progress(len(jobs), "video", "video", cfg.progress, clip_bars=cfg.workers <= 1)
    paths = dict(jobs)
    stream = ClipStream(
        jobs, clip_length=clip_length, frames_per_clip=fpc, transform=backbone.transform,
        batch_size=cfg.batch_size,
    )  # fmt: skip
    pending: dict[str, list[torch.Tensor]] = {}
    started: dict[str, float] = {}
    finished = 0
    for item in decoded_chunks(stream, cfg.workers, pin_memory=device.type == "cuda"):
        vid = item.vid
        if item.frames is not None:
            if vid not in started:
                started[vid] = time.perf_counter()
                bar.start_video(vid, paths[vid], clip_length)
            feats = encode_clips(backbone, item.frames, layers, pool, device, cfg.amp)
            pending.setdefault(vid, []).append(feats)
            bar.add_clips(feats.shape[1])
            continue
        bar.end_video()
        finished += 1
        parts = pending.pop(vid, [])
        if item.error is not None or not parts:
            summary.videos_failed[vid] = item.error or "no clip decoded"
            if not cfg.progress:
                log(f"failed: {summary.videos_failed[vid]}")
        else:
            array = torch.cat(parts, dim=1).numpy()
            save_video_features(video_dir, vid, array)
            summary.videos_done += 1
            summary.clips += array.shape[1]
            if not cfg.progress:  # e.g. output to a log file: one line per video
                seconds = time.perf_counter() - started.pop(vid)
                log(
                    f"video {finished}/{len(jobs)} {vid}: {array.shape[1]} clips in {seconds:.1f} s"
                )
        bar.update(1)
    bar.close()


def config_dict(cfg: ExtractConfig) -> dict[str, Any]:
    """JSON-friendly view of a config (for logs)."""
    d = asdict(cfg)
    return {
        k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if k == "annotations" else v)
        for k, v in d.items()
    }
