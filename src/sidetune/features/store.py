"""Feature store: read and write the public per-file feature layouts.

Layouts (one file per video / per query, any of these suffixes, looked up in this order):

- video: ``{root}/{vid}.npz`` with key ``features`` (Moment-DETR / lighthouse), ``{vid}.pt``
  (a tensor, or a dict holding ``features``), ``{vid}.npy``.
- text: ``{root}/qid{qid}.npz`` with key ``last_hidden_state``, ``qid{qid}.pt``, ``qid{qid}.npy``;
  as a fallback ``{qid}.npz|.pt|.npy`` (caches that name query files by bare id).

Arrays are ``[T, F]`` / ``[L, F]`` (one layer) or ``[K, T, F]`` / ``[K, L, F]`` (K intermediate
layers, shallowest first): the layout of Moment-DETR / QD-DETR / lighthouse (one layer) and of
``sidetune extract`` / SDST (K layers).

``layout="r2tuning"`` reads R2-Tuning's multi-layer CLIP cache (``tools/extract_feat.py`` of
yeliudev/R2-Tuning): video ``{vid}.npy`` shaped ``[T, K, P, C]`` float16 (the last K CLIP layers'
hidden states of every frame, P tokens with the CLS token first) and text ``{qid}.npy`` shaped
``[L, K, C]``. The token axis is pooled (``token_pool``: ``cls`` = token 0, ``mean`` = the mean of
the patch tokens, CLS excluded) and K moves first, giving ``[K, T, C]`` / ``[K, L, C]``. Writers store float16 ``.npz`` atomically. ``.pt`` files are read
with ``torch.load(weights_only=True)``: never unpickle arbitrary objects.

Loaders return the array as stored (float16 stays float16, bfloat16 becomes float32 since
NumPy has no bfloat16); the collate function converts to float32 once per sample.
"""

from __future__ import annotations

import os
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sidetune.errors import SidetuneError
from sidetune.utils.io import atomic_save

VIDEO_KEY = "features"
TEXT_KEY = "last_hidden_state"
SUFFIXES = (".npz", ".pt", ".npy")

PathLike = str | os.PathLike[str]
Kind = Literal["video", "text"]
Layout = Literal["auto", "r2tuning"]
TokenPool = Literal["cls", "mean"]


class FeatureError(SidetuneError, ValueError):
    """A feature file that is missing, unreadable, or of the wrong layout; names the file."""


def _candidates(root: Path, kind: Kind, ident: str) -> list[Path]:
    stems = [ident] if kind == "video" else [f"qid{ident}", ident]
    return [root / f"{stem}{suffix}" for stem in stems for suffix in SUFFIXES]


def find_feature_file(root: PathLike, ident: int | str, kind: Kind) -> Path:
    """The first existing file for video ``vid`` / query ``qid`` under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FeatureError(f"{kind} feature directory {root} does not exist")
    candidates = _candidates(root, kind, str(ident))
    for path in candidates:
        if path.is_file():
            return path
    names = ", ".join(p.name for p in candidates[: len(SUFFIXES)])
    what = f"video {ident!r}" if kind == "video" else f"query qid={ident!r}"
    raise FeatureError(f"no {kind} features for {what} in {root} (looked for {names})")


def _check_rank(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim not in (2, 3):
        raise FeatureError(
            f"{path}: features must be [T, F] or [K, T, F], got shape {tuple(arr.shape)}"
        )
    if 0 in arr.shape:
        raise FeatureError(f"{path}: empty feature array of shape {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise FeatureError(f"{path}: features must be floating point, got dtype {arr.dtype}")
    return arr


def _load_pt(path: Path, key: str) -> np.ndarray:
    import torch  # local: reading .npz/.npy must not pay for importing torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad/unsafe pickles
        raise FeatureError(f"{path}: cannot read .pt file ({type(exc).__name__}: {exc})") from exc
    if isinstance(obj, dict):
        if key not in obj:
            raise FeatureError(f"{path}: missing key {key!r} (keys: {sorted(map(str, obj))})")
        obj = obj[key]
    if not isinstance(obj, torch.Tensor):
        raise FeatureError(f"{path}: expected a tensor, got {type(obj).__name__}")
    if obj.dtype == torch.bfloat16:
        obj = obj.float()
    return obj.detach().cpu().numpy()


def load_feature_file(path: PathLike, key: str) -> np.ndarray:
    """Read one feature file (``.npz`` key ``key``, ``.pt``, ``.npy``); validate the rank."""
    path = Path(path)
    suffix = path.suffix
    if suffix not in SUFFIXES:
        raise FeatureError(f"{path}: unsupported feature file type (use {', '.join(SUFFIXES)})")
    if not path.is_file():
        raise FeatureError(f"{path}: feature file does not exist")
    if suffix == ".pt":
        arr = _load_pt(path, key)
    else:
        try:
            if suffix == ".npz":
                with np.load(path, allow_pickle=False) as data:
                    if key not in data.files:
                        raise FeatureError(f"{path}: missing key {key!r} (keys: {data.files})")
                    arr = data[key]
            else:
                arr = np.load(path, allow_pickle=False)
        except FeatureError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise FeatureError(
                f"{path}: corrupt or unreadable ({type(exc).__name__}: {exc})"
            ) from exc
    return _check_rank(np.asarray(arr), path)


def _load_raw(path: Path, key: str) -> np.ndarray:
    """The stored array of any rank (R2-Tuning files are 4-D), errors naming the file."""
    if path.suffix == ".pt":
        return _load_pt(path, key)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if key not in data.files:
                    raise FeatureError(f"{path}: missing key {key!r} (keys: {data.files})")
                return np.asarray(data[key])
        return np.asarray(np.load(path, allow_pickle=False))
    except FeatureError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise FeatureError(f"{path}: corrupt or unreadable ({type(exc).__name__}: {exc})") from exc


def r2tuning_video(arr: np.ndarray, token_pool: TokenPool, where: str) -> np.ndarray:
    """R2-Tuning video ``[T, K, P, C]`` -> ``[K, T, C]`` float32 (tokens pooled by ``token_pool``)."""
    if arr.ndim != 4 or arr.shape[2] < 2:
        raise FeatureError(
            f"{where}: R2-Tuning video features must be [T, K, P, C] with P >= 2 tokens "
            f"(data.feature_layout=r2tuning), got shape {tuple(arr.shape)}"
        )
    x = arr.astype(np.float32, copy=False)  # fp16 mean over ~50-577 tokens: accumulate in fp32
    pooled = x[:, :, 0] if token_pool == "cls" else x[:, :, 1:].mean(axis=2)
    return np.ascontiguousarray(pooled.transpose(1, 0, 2))


def r2tuning_text(arr: np.ndarray, where: str) -> np.ndarray:
    """R2-Tuning text ``[L, K, C]`` -> ``[K, L, C]``."""
    if arr.ndim != 3:
        raise FeatureError(
            f"{where}: R2-Tuning text features must be [L, K, C] (data.feature_layout=r2tuning), "
            f"got shape {tuple(arr.shape)}"
        )
    return np.ascontiguousarray(arr.transpose(1, 0, 2))


def load_r2tuning_file(path: PathLike, kind: Kind, token_pool: TokenPool = "cls") -> np.ndarray:
    """One R2-Tuning cache file as ``[K, T, C]`` (video) / ``[K, L, C]`` (text)."""
    path = Path(path)
    raw = _load_raw(path, VIDEO_KEY if kind == "video" else TEXT_KEY)
    if raw.dtype == np.float16 or np.issubdtype(raw.dtype, np.floating):
        arr = (
            r2tuning_video(raw, token_pool, str(path))
            if kind == "video"
            else r2tuning_text(raw, str(path))
        )
    else:
        raise FeatureError(f"{path}: features must be floating point, got dtype {raw.dtype}")
    return _check_rank(arr, path)


def load_video_features(root: PathLike, vid: str) -> np.ndarray:
    """``[T, F]`` or ``[K, T, F]`` features of video ``vid`` (``{vid}.npz`` key ``features``, ...)."""
    return load_feature_file(find_feature_file(root, vid, "video"), VIDEO_KEY)


def load_text_features(root: PathLike, qid: int | str) -> np.ndarray:
    """``[L, F]`` or ``[K, L, F]`` features of query ``qid`` (``qid{qid}.npz`` key ``last_hidden_state``)."""
    return load_feature_file(find_feature_file(root, qid, "text"), TEXT_KEY)


def _save(path: Path, key: str, feats: np.ndarray) -> Path:
    arr = np.asarray(feats)
    if arr.ndim not in (2, 3) or 0 in arr.shape:
        raise FeatureError(f"{path}: refusing to write features of shape {tuple(arr.shape)}")
    arr = np.ascontiguousarray(arr, dtype=np.float16)

    def write(tmp: Path) -> None:
        # A file object, not a name: np.savez would append ".npz" to the temporary name.
        with open(tmp, "wb") as fh:
            arrays: dict[str, Any] = {key: arr}
            np.savez(fh, **arrays)

    atomic_save(path, write)
    return path


def save_video_features(root: PathLike, vid: str, feats: np.ndarray) -> Path:
    """Write ``{root}/{vid}.npz`` (key ``features``, float16) atomically; returns the path."""
    return _save(Path(root) / f"{vid}.npz", VIDEO_KEY, feats)


def save_text_features(root: PathLike, qid: int | str, feats: np.ndarray) -> Path:
    """Write ``{root}/qid{qid}.npz`` (key ``last_hidden_state``, float16) atomically."""
    return _save(Path(root) / f"qid{qid}.npz", TEXT_KEY, feats)


class FeatureStore:
    """Reads one feature directory, with an optional in-memory LRU cache.

    Grounding trains from cached features and many queries share a video, so keeping the
    (small, float16) arrays in memory saves most of the file reads after the first epoch.
    ``cache=False`` reads every time; ``max_items=0`` keeps everything once read.
    Cached arrays are shared: callers must not modify them in place.
    """

    def __init__(
        self,
        root: PathLike,
        kind: Kind,
        cache: bool = False,
        max_items: int = 0,
        layout: Layout = "auto",
        token_pool: TokenPool = "cls",
    ) -> None:
        if kind not in ("video", "text"):
            raise ValueError(f"kind must be 'video' or 'text', got {kind!r}")
        self.layout: Layout = layout
        self.token_pool: TokenPool = token_pool
        self.root = Path(root)
        self.kind: Kind = kind
        self.cache = cache
        self.max_items = max_items
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r}, kind={self.kind!r}, cache={self.cache})"

    def path(self, ident: int | str) -> Path:
        return find_feature_file(self.root, ident, self.kind)

    def exists(self, ident: int | str) -> bool:
        return any(p.is_file() for p in _candidates(self.root, self.kind, str(ident)))

    def get(self, ident: int | str) -> np.ndarray:
        key = str(ident)
        if self.cache and key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        if self.layout == "r2tuning":
            arr = load_r2tuning_file(self.path(key), self.kind, self.token_pool)
        elif self.kind == "video":
            arr = load_video_features(self.root, key)
        else:
            arr = load_text_features(self.root, key)
        if self.cache:
            self._items[key] = arr
            if self.max_items > 0 and len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return arr

    __getitem__ = get

    def clear(self) -> None:
        self._items.clear()
