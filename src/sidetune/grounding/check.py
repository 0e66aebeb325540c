"""Pre-flight checks of a grounding config: bad data found before the long work starts.

- :func:`check_feature_shapes` (cheap; ``train`` and ``predict`` run it): a few feature files
  spread over the split must agree with each other and with ``model.*``. A lone odd file is
  named as such instead of asking to change the config for every other file.
- :func:`check_grounding` (``sidetune check``): every annotation row and every feature file the
  config refers to: existence, readability, rank, dtype, NaN / Inf, layers and dimensions
  against ``model.*``, and the feature timeline against the annotated durations and windows.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sidetune.config import ConfigError
from sidetune.features.store import FeatureError, FeatureStore
from sidetune.grounding.annotations import AnnotationError, GroundingRecord, load_annotations
from sidetune.grounding.data import DataError, GroundingDataset, select_layers
from sidetune.grounding.metrics import brief_metric_names
from sidetune.utils.report import CheckReport

if TYPE_CHECKING:
    from sidetune.grounding.config import GroundingConfig

T = TypeVar("T")
SAMPLE_FILES = 8  # files the cheap check loads per split


def _spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)``, the first included."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def check_feature_shapes(
    dataset: GroundingDataset, cfg: GroundingConfig, samples: int = SAMPLE_FILES
) -> None:
    """The features on disk must fit ``model.*``; say which key to change, or which file is odd.

    Loads ``samples`` queries spread over the split. When they disagree among themselves the
    minority file is named (re-extract it); when they agree and differ from the config the
    config key to set is named.
    """
    shapes: dict[int, dict[str, int]] = {}
    for i in _spread(len(dataset), samples):
        sample = dataset[i]
        shapes[i] = {
            "num_levels": int(sample["video_feats"].shape[0]),
            "video_dim": int(sample["video_feats"].shape[-1]),
            "text_dim": int(sample["text_feats"].shape[-1]),
        }
    wanted = {
        "video_dim": cfg.model.video_dim,
        "text_dim": cfg.model.text_dim,
        "num_levels": cfg.model.num_levels,
    }
    for key, value in wanted.items():
        seen = Counter(s[key] for s in shapes.values())
        if len(seen) > 1:
            common, n = seen.most_common(1)[0]
            odd = next(i for i, s in shapes.items() if s[key] != common)
            rec = dataset.records[odd]
            where = (
                f"text features {dataset.texts.path(rec.qid)}"
                if key == "text_dim"
                else f"video features {dataset.videos.path(rec.vid)}"
            )
            raise DataError(
                f"the {dataset.split} feature files disagree on {key}: {n} of {len(shapes)} "
                f"sampled give {common}, but {where} (qid {rec.qid}) gives {shapes[odd][key]}; "
                "re-extract the odd file(s) (`sidetune check CONFIG` lists every one)"
            )
        found = next(iter(seen))
        if found != value:
            raise ConfigError(
                f"model.{key}={value} but the {dataset.split} features ({cfg.data.video_features}, "
                f"{cfg.data.text_features}) give {found} (all {len(shapes)} sampled files agree); "
                f"set model.{key}={found}"
                + (" or choose data.layers" if key == "num_levels" else "")
            )


def scan_features(dataset: GroundingDataset, progress: bool = True) -> None:
    """Load every feature file of ``dataset`` once (rank, dtype, NaN / Inf); the first error raises.

    ``train`` runs it on the validation split, whose files are otherwise first read after a
    whole training epoch. (The training split's files are checked as they are loaded.)
    """
    vids = sorted({r.vid for r in dataset.records})
    for vid in _progress(vids, f"{dataset.split} video features", progress and len(vids) > 200):
        dataset.videos.get(vid)
    qids = [r.qid for r in dataset.records]
    for qid in _progress(qids, f"{dataset.split} text features", progress and len(qids) > 200):
        dataset.texts.get(qid)


def _progress(items: Sequence[T], desc: str, show: bool) -> Iterator[T]:
    if not show:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, leave=False, dynamic_ncols=True)


def _layers(arr: Any, layers: Sequence[int] | None, last_only: bool, where: str) -> int:
    return int(select_layers(arr, layers, last_only, where).shape[0])


def _odd_values(
    report: CheckReport,
    values: dict[str, int],
    config_key: str,
    wanted: int,
    what: str,
) -> None:
    """Files whose value differs from ``wanted`` (``model.X``): one line if all agree, else each."""
    if not values:
        return
    seen = Counter(values.values())
    common, n = seen.most_common(1)[0]
    if common != wanted:
        report.add(
            "config mismatch",
            f"{config_key}={wanted} but {n} of {len(values)} {what} file(s) give {common}; "
            f"set {config_key}={common}",
        )
    for path, value in values.items():
        if value != common:
            report.add(
                "odd feature file",
                f"{path}: {config_key.split('.')[-1]} {value}, while {n} other {what} file(s) "
                f"give {common}; re-extract it",
            )


def _read_annotations(
    cfg: GroundingConfig, report: CheckReport
) -> list[tuple[str, GroundingRecord]]:
    rows: list[tuple[str, GroundingRecord]] = []
    seen: set[str] = set()
    for split in ("train", "val", "test"):
        path = getattr(cfg.data, split)
        if path is None or path in seen:  # e.g. val and test naming one file: read it once
            continue
        seen.add(path)
        try:
            ann = load_annotations(path, dataset=cfg.data.dataset, strict=False)
        except AnnotationError as exc:
            report.add("annotation file", str(exc))
            continue
        report.count(f"{split} rows ({path})", len(ann.records))
        for message in ann.skipped:
            report.add("annotation row", message)
        rows += [(split, r) for r in ann.records]
    return rows


def _check_timeline(
    report: CheckReport, path: str, num_clips: int, clip: float, records: Iterable[GroundingRecord]
) -> None:
    """The features must cover the annotated video: catches a wrong clip length or a cut file."""
    covered = num_clips * clip
    for rec in records:
        slack = max(2 * clip, 0.1 * rec.duration)
        last_end = max((e for _, e in rec.windows), default=0.0)
        if covered + clip < last_end:
            report.add(
                "features shorter than windows",
                f"{path}: {num_clips} clips x {clip:g} s cover {covered:g} s, but qid {rec.qid} "
                f"has a window ending at {last_end:g} s (truncated file or wrong data.clip_length?)",
            )
            return
        if abs(covered - rec.duration) > slack:
            report.add(
                "duration mismatch",
                f"{path}: {num_clips} clips x {clip:g} s cover {covered:g} s of a "
                f"{rec.duration:g} s video (qid {rec.qid}); wrong data.clip_length or an "
                "incomplete extraction?",
            )
            return


def check_grounding(cfg: GroundingConfig, progress: bool = True) -> CheckReport:
    """Scan everything ``cfg`` refers to; see the module docstring. Never raises for bad data."""
    d, m = cfg.data, cfg.model
    report = CheckReport(f"grounding data of run_dir={cfg.run_dir} (data.dataset={d.dataset})")
    names = brief_metric_names(d.dataset)
    if cfg.resolved_best_metric not in names:
        report.add(
            "config",
            f"best_metric {cfg.resolved_best_metric!r} is not a {d.dataset} metric; one of "
            f"{', '.join(sorted(names))}",
        )
    if d.train is None:
        report.add("config", "data.train is null: set it to the training annotation jsonl")
    rows = _read_annotations(cfg, report)
    stores = {}
    for key, kind in (("video_features", "video"), ("text_features", "text")):
        root = getattr(d, key)
        if not root or not FeatureStore(root, kind).root.is_dir():  # type: ignore[arg-type]
            report.add("config", f"data.{key}: directory {root!r} does not exist")
        else:
            stores[kind] = FeatureStore(root, kind)  # type: ignore[arg-type]
    if len(stores) < 2 or not rows:
        return report

    by_vid: dict[str, list[GroundingRecord]] = defaultdict(list)
    for _, rec in rows:
        by_vid[rec.vid].append(rec)
    clip = d.resolved_clip_length
    levels: dict[str, int] = {}
    video_dims: dict[str, int] = {}
    for vid in _progress(sorted(by_vid), "video features", progress):
        report.count("video feature files")
        try:
            path = str(stores["video"].path(vid))
            arr = stores["video"].get(vid)
            levels[path] = _layers(arr, d.layers, d.last_layer_only, path)
        except (FeatureError, DataError) as exc:
            report.add("video feature file", str(exc))
            continue
        video_dims[path] = int(arr.shape[-1])
        _check_timeline(report, path, int(arr.shape[-2]), clip, by_vid[vid])
    text_dims: dict[str, int] = {}
    text_levels: dict[str, int] = {}
    for _, rec in _progress([r for r in rows], "text features", progress):
        report.count("text feature files")
        try:
            path = str(stores["text"].path(rec.qid))
            arr = stores["text"].get(rec.qid)
            if arr.ndim == 3 or d.text_layers is not None:
                layers = d.text_layers if d.text_layers is not None else d.layers
                text_levels[path] = _layers(arr, layers, d.last_layer_only, path)
        except (FeatureError, DataError) as exc:
            report.add("text feature file", str(exc))
            continue
        text_dims[path] = int(arr.shape[-1])
    _odd_values(report, levels, "model.num_levels", m.num_levels, "video")
    _odd_values(report, text_levels, "model.num_levels", m.num_levels, "multi-layer text")
    _odd_values(report, video_dims, "model.video_dim", m.video_dim, "video")
    _odd_values(report, text_dims, "model.text_dim", m.text_dim, "text")
    return report
