"""From an mp4 and a sentence to moments: :class:`Grounder` (``sidetune ground``).

``Grounder.from_run(run_dir)`` rebuilds the extractor the run's features were made with (the
run's ``extract_meta.json``: backbone, layers, pooling, clip length, frames per clip, text tower
and layers; any of them can be overridden, and checkpoints / tokenizers are passed by the user)
and checks it against the model's feature sizes. ``ground(video, queries)`` then

1. decodes the video clip by clip (streamed: memory does not grow with its length) and runs the
   frozen backbone, or reads the features back from the cache (same bytes + same settings);
2. encodes each query with the frozen text tower (real tokens only, as ``extract`` stores them);
3. runs SDST; a video longer than the trained length (``data.max_clips``) is slid over in
   windows of that length (:mod:`sidetune.grounding.windows`), never pooled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidetune.errors import SidetuneError
from sidetune.grounding.predictor import GroundingPredictor, load_grounding_model
from sidetune.grounding.runs import run_config_path, run_extract_meta

Progress = Callable[[str, float], None]
PathLike = str | Path


class GroundError(SidetuneError, ValueError):
    """Bad input to ``ground``: a query, a backbone that does not fit the run, a missing option."""


@dataclass
class Moment:
    start: float  # seconds
    end: float  # seconds
    score: float


@dataclass
class GroundingResult:
    """Moments (best first) and per-clip saliency of one query over the whole video."""

    query: str
    moments: list[Moment]
    saliency: list[float]  # one per clip, covering the whole video
    clip_len: float  # seconds per saliency entry
    duration: float  # seconds

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"query", "moments": [[s, e, score], ...], "saliency", "clip_len", "duration"}``."""
        return {
            "query": self.query,
            "moments": [[m.start, m.end, m.score] for m in self.moments],
            "saliency": list(self.saliency),
            "clip_len": self.clip_len,
            "duration": self.duration,
        }

    def highlights(self, k: int = 5) -> list[tuple[float, float, float]]:
        """The ``k`` clips of highest saliency as ``(start_s, end_s, score)``, best first."""
        order = np.argsort(-np.asarray(self.saliency, dtype=np.float64), kind="stable")[:k]
        return [
            (float(i * self.clip_len), float(min((i + 1) * self.clip_len, self.duration)),
             float(self.saliency[i]))
            for i in order
        ]  # fmt: skip


@dataclass
class ExtractorSettings:
    """How a run's features were made (``extract_meta.json``) plus what only the user knows."""

    backbone: str
    clip_length: float
    frames_per_clip: int | None = None
    layers: list[int] | None = None
    pool: str = "adaptive"
    text_backbone: str | None = None
    text_layers: list[int] | None = None
    project_text: bool = False
    checkpoint: str | None = None
    text_checkpoint: str | None = None
    tokenizer: str | None = None
    video_dim: int | None = None
    text_dim: int | None = None
    batch_size: int = 16

    def cache_settings(self) -> dict[str, Any]:
        """What the video features depend on (the cache key's settings part)."""
        ckpt: Any = None
        if self.checkpoint is not None:
            p = Path(self.checkpoint)
            stat = p.stat() if p.exists() else None
            ckpt = [
                str(p.resolve()),
                stat.st_size if stat else None,
                stat.st_mtime if stat else None,
            ]
        return {
            "backbone": self.backbone, "checkpoint": ckpt, "layers": self.layers,
            "pool": self.pool, "clip_length": self.clip_length,
            "frames_per_clip": self.frames_per_clip, "version": 1,
        }  # fmt: skip


_OVERRIDE_KEYS = {f for f in ExtractorSettings.__dataclass_fields__}


def extractor_settings(
    run_dir: PathLike, clip_length: float, overrides: Mapping[str, Any]
) -> ExtractorSettings:
    """The run's recorded extraction settings with ``overrides`` (None values ignored) on top."""
    unknown = sorted(set(overrides) - _OVERRIDE_KEYS)
    if unknown:
        raise GroundError(
            f"unknown backbone option(s) {unknown} (choose from {sorted(_OVERRIDE_KEYS)})"
        )
    meta = run_extract_meta(run_dir) or {}
    values: dict[str, Any] = {k: meta[k] for k in _OVERRIDE_KEYS if meta.get(k) is not None}
    values.setdefault("clip_length", clip_length)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "backbone" not in values:
        raise GroundError(
            f"{run_dir}: the run records no extraction settings (extract_meta.json: its features "
            "were not made by `sidetune extract`); pass --backbone (and --checkpoint, "
            "--text-checkpoint, --tokenizer) for the backbone its features came from"
        )
    if "layers" in overrides and overrides["layers"] is not None:
        values["layers"] = list(overrides["layers"])
    return ExtractorSettings(**values)


def _emit(progress: Progress | None, stage: str, fraction: float) -> None:
    if progress is not None:
        progress(stage, float(min(max(fraction, 0.0), 1.0)))


class Grounder:
    """A trained run plus the frozen backbones its features came from.

    >>> g = Grounder.from_run("demo_out/run")                          # doctest: +SKIP
    >>> [r] = g.ground("video.mp4", "the red circle moves left")        # doctest: +SKIP
    >>> r.moments[0].start, r.moments[0].end, r.saliency[:3]           # doctest: +SKIP
    """

    def __init__(
        self,
        predictor: GroundingPredictor,
        settings: ExtractorSettings,
        video_backbone: Any,
        text_backbone: Any,
        device: str | torch.device = "cpu",
        cache_dir: PathLike | None = None,
    ) -> None:
        from sidetune.features.video_cache import VideoFeatureCache, default_cache_dir

        self.predictor = predictor
        self.settings = settings
        self.video_backbone = video_backbone
        self.text_backbone = text_backbone
        self.device = torch.device(device)
        self.cache = VideoFeatureCache(cache_dir if cache_dir is not None else default_cache_dir())
        self._digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> content hash
        self._memory: dict[str, tuple[np.ndarray, float]] = {}  # last video's features
        self.stride: int | None = None  # window stride in clips (None: the run's, else half)
        self.last_timings: dict[str, float] = {}
        self.last_cache_hit = False
        self._check_dims()

    @classmethod
    def from_run(
        cls,
        run_dir: PathLike,
        *,
        checkpoint: str = "best",
        device: str = "cpu",
        cache_dir: str | Path | None = None,
        **backbone_overrides: Any,
    ) -> Grounder:
        """Load the run's model (``checkpoint``: ``best`` | ``last`` | a directory) and rebuild
        its extractor.

        ``backbone_overrides`` replace the run's recorded extraction settings: ``backbone``,
        ``backbone_checkpoint`` (the backbone's weights), ``text_backbone``,
        ``text_checkpoint``, ``tokenizer``, ``layers``, ``text_layers``, ``pool``,
        ``clip_length``, ``frames_per_clip``, ``project_text``, ``batch_size`` (clips per
        forward pass). ``cache_dir``: where video features are cached (default
        :func:`sidetune.features.video_cache.default_cache_dir`).
        """
        from sidetune.backbones import create_backbone, create_text_backbone, text_backbone_for
        from sidetune.grounding.runs import load_grounding_config

        run_config_path(run_dir)
        predictor = load_grounding_model(run_dir, checkpoint=checkpoint, device=device)
        overrides = dict(backbone_overrides)
        if "backbone_checkpoint" in overrides:
            overrides["checkpoint"] = overrides.pop("backbone_checkpoint")
        cfg = load_grounding_config(Path(run_dir) / "config.yaml")
        settings = extractor_settings(run_dir, cfg.data.resolved_clip_length, overrides)
        if settings.checkpoint is None and not settings.backbone.endswith("-tiny"):
            raise GroundError(
                f"the run's features came from {settings.backbone}: pass its weights "
                "(--checkpoint PATH, Python: backbone_checkpoint=PATH)"
            )
        video = create_backbone(
            settings.backbone, checkpoint=settings.checkpoint,
            frames_per_clip=settings.frames_per_clip,
        )  # fmt: skip
        text_name = settings.text_backbone or text_backbone_for(settings.backbone)
        text_ckpt = settings.text_checkpoint or (
            settings.checkpoint if not text_name.endswith("-tiny") else None
        )
        text = create_text_backbone(text_name, checkpoint=text_ckpt, tokenizer=settings.tokenizer)
        dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                           ("cpu" if device == "auto" else device))  # fmt: skip
        video.to(dev)
        text.to(dev)
        return cls(predictor, settings, video, text, device=dev, cache_dir=cache_dir)

    # -- checks --------------------------------------------------------------------------------

    def _check_dims(self) -> None:
        model = self.predictor.cfg.model
        s = self.settings
        got_v = int(self.video_backbone.feature_dim(s.pool))
        if got_v != model.video_dim:
            raise GroundError(
                f"backbone {s.backbone} with --pool {s.pool} gives {got_v}-d video features but "
                f"the run's model expects video_dim={model.video_dim}: use the backbone the run "
                "was trained with"
            )
        got_t = int(self.text_backbone.feature_dim(s.project_text))
        if got_t != model.text_dim:
            raise GroundError(
                f"text tower {self.text_backbone.name} gives {got_t}-d token features but the "
                f"run's model expects text_dim={model.text_dim}: use the text tower the run was "
                "trained with"
            )

    def check_queries(self, queries: Sequence[str]) -> None:
        """Empty queries and queries past the text tower's token limit are errors."""
        tok = self.text_backbone.tokenizer
        limit = int(self.text_backbone.max_length)
        for i, q in enumerate(queries):
            if not isinstance(q, str) or not q.strip():
                raise GroundError(f"query {i + 1}: empty query (give a sentence to ground)")
            if tok is None:
                continue
            n = len(tok(q, truncation=False)["input_ids"])
            if limit and n > limit:
                raise GroundError(
                    f"query {i + 1} ({q[:40]!r}...): {n} tokens, more than the text encoder's "
                    f"limit of {limit}; shorten it"
                )

    # -- features ------------------------------------------------------------------------------

    def _digest(self, path: Path) -> str:
        from sidetune.features.video_cache import file_digest

        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in self._digests:
            self._digests[key] = file_digest(path)
        return self._digests[key]

    @torch.no_grad()
    def video_features(
        self, video_path: PathLike, progress: Progress | None = None
    ) -> tuple[np.ndarray, float]:
        """``([K, T, F] float32, duration s)`` of a video: memory, disk cache, or extraction."""
        from sidetune.features.extract import autocast_for, prefetch
        from sidetune.features.video_cache import cache_key
        from sidetune.video.decode import VideoDecodeError, iter_clips, probe
        from sidetune.video.sampling import num_clips_for

        path = Path(video_path)
        if not path.is_file():
            raise VideoDecodeError(path, "no such file")
        if path.stat().st_size == 0:
            raise VideoDecodeError(path, "the file is empty (0 bytes)")
        key = cache_key(self._digest(path), self.settings.cache_settings())
        hit = self._memory.get(key) or self.cache.get(key)
        self.last_cache_hit = hit is not None
        if hit is not None:
            self._memory = {key: hit}
            _emit(progress, "decode+extract", 1.0)
            return hit
        info = probe(path)
        if not info.duration > 0:
            raise VideoDecodeError(path, "zero-length video (no duration)")
        s = self.settings
        fpc = s.frames_per_clip or self.video_backbone.frames_per_clip
        layers = self.video_backbone.resolve_layers(s.layers)
        total = num_clips_for(info.duration, s.clip_length)
        _emit(progress, "decode+extract", 0.0)
        chunks = iter_clips(
            path, s.clip_length, fpc, transform=self.video_backbone.transform,
            chunk_size=s.batch_size, duration=info.duration,
        )  # fmt: skip
        outputs: list[torch.Tensor] = []
        done = 0
        for chunk in prefetch(chunks):
            clips = chunk.frames.to(self.device, non_blocking=True)
            with autocast_for(self.device, True):
                feats = self.video_backbone.forward_intermediates(clips, layers, s.pool)
            outputs.append(feats.float().cpu())
            done += clips.shape[0]
            _emit(progress, "decode+extract", done / total)
        video = torch.cat(outputs, dim=1).numpy()
        if not np.isfinite(video).all():
            raise GroundError(f"{path}: the backbone gave non-finite features")
        self.cache.put(key, video, info.duration)  # only complete entries
        self._memory = {key: (video, info.duration)}
        return video, info.duration

    @torch.no_grad()
    def text_features(self, queries: Sequence[str]) -> list[np.ndarray]:
        """``[K, L, F]`` float32 per query (real tokens only, as ``sidetune extract`` stores them)."""
        from sidetune.features.extract import Query, extract_text_features

        self.check_queries(queries)
        layers = self.text_backbone.resolve_layers(self._text_layers())
        items = [Query(qid=i, vid="", text=q) for i, q in enumerate(queries)]
        out = extract_text_features(
            self.text_backbone, items, layers=layers, batch_size=64, device=self.device,
            project=self.settings.project_text,
        )  # fmt: skip
        return [feats for _, feats in out]

    def _text_layers(self) -> list[int] | None:
        s = self.settings
        if s.text_layers is not None:
            return list(s.text_layers)
        if s.layers is not None:  # extract's default: the last K text layers
            return list(range(-len(s.layers), 0))
        return None

    # -- grounding -----------------------------------------------------------------------------

    def ground(
        self,
        video_path: PathLike,
        queries: str | list[str],
        *,
        progress: Progress | None = None,
    ) -> list[GroundingResult]:
        """Moments and saliency of each query over the whole video (any length).

        ``progress(stage, fraction)``: stages ``decode+extract``, ``text``, ``model``.
        """
        qs = [queries] if isinstance(queries, str) else list(queries)
        if not qs:
            raise GroundError("no query given")
        self.check_queries(qs)  # before the long work
        t0 = time.perf_counter()
        video, duration = self.video_features(video_path, progress)
        t1 = time.perf_counter()
        _emit(progress, "text", 0.0)
        texts = self.text_features(qs)
        _emit(progress, "text", 1.0)
        t2 = time.perf_counter()
        results = []
        for i, (q, text) in enumerate(zip(qs, texts)):
            row = self.predictor.predict(
                video, text, duration=duration, clip_length=self.settings.clip_length,
                query=q, qid=i, vid=Path(video_path).stem, long_video="window", stride=self.stride,
            )  # fmt: skip
            results.append(
                GroundingResult(
                    query=q,
                    moments=[
                        Moment(float(s), float(e), float(c))
                        for s, e, c in row["pred_relevant_windows"]
                    ],
                    saliency=[float(x) for x in row["pred_saliency_scores"]],
                    clip_len=float(self.settings.clip_length),
                    duration=float(duration),
                )
            )
            _emit(progress, "model", (i + 1) / len(qs))
        self.last_timings = {
            "video_s": t1 - t0, "text_s": t2 - t1, "model_s": time.perf_counter() - t2,
        }  # fmt: skip
        return results

    def describe(self) -> dict[str, Any]:
        """The extractor settings in use (for logs and ``--out`` files)."""
        return {k: v for k, v in asdict(self.settings).items() if v is not None}


__all__ = [
    "ExtractorSettings",
    "GroundError",
    "Grounder",
    "GroundingResult",
    "Moment",
    "extractor_settings",
]
