"""Weighted deformable offsets of a trained SDST (paper Sec. 6.2, Fig. 4 and Fig. A).

For every decoder query ``q``, head ``h`` and refinement level ``l`` the paper plots the
attention-weighted offset ``d_q = sum_p A_{q,p} Delta_{q,p}`` (Fig. 4 caption), in units of the
half width of the query's reference: -1 / +1 are its left / right boundaries, values beyond
them mean the head looks outside the current moment. This module records them with forward
hooks on the :class:`~sidetune.grounding.rdsa.DeformableSampler` of the sparse stream (RDSA or
the deformable-CA baseline; standard CA has no offsets), without touching the model's code:

    with OffsetRecorder(model) as rec:
        model(video, video_mask, text, text_mask)
    rec.weighted_offsets()   # (B, K, M, H)

:func:`collect_offsets` runs a loader and stacks the records; :func:`dump_offsets` does it for a
trained run and writes an ``.npz`` (``sidetune offsets``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from sidetune.errors import SidetuneError
from sidetune.grounding.rdsa import DeformableSampler


class OffsetsError(SidetuneError, ValueError):
    """The model has no deformable video attention whose offsets could be recorded."""


class OffsetRecorder:
    """Forward hooks that record ``(offsets, weights)`` of every deformable sampler call.

    One SDST forward calls the video attention once per level (the same module K times when
    levels share weights, one module per level otherwise), so the i-th recorded call of a
    forward is level ``i``. Use as a context manager; the hooks are removed on exit.
    """

    def __init__(self, model: nn.Module) -> None:
        self.samplers = [m for m in model.modules() if isinstance(m, DeformableSampler)]
        if not self.samplers:
            raise OffsetsError(
                "the model has no deformable video attention (model.attention=standard_ca or no "
                "'rdsa' in model.sparse_modules): there are no offsets to record"
            )
        self.calls: list[tuple[Tensor, Tensor]] = []
        self._handles: list[RemovableHandle] = []

    def _hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        query, refs = args[0], args[1]
        assert isinstance(module, DeformableSampler)
        with torch.no_grad():
            _, weights, offsets = module.sampling(query, refs)  # (B, M, H, P) each, Eq. 8 / 11
        self.calls.append((offsets.detach().float(), weights.detach().float()))

    def __enter__(self) -> OffsetRecorder:
        self._handles = [s.register_forward_hook(self._hook) for s in self.samplers]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def clear(self) -> None:
        self.calls = []

    def offsets_and_weights(self) -> tuple[Tensor, Tensor]:
        """Raw offsets ``Delta`` and softmaxed weights ``A``, each ``(B, K, M, H, P)``."""
        if not self.calls:
            raise OffsetsError("no forward pass was recorded")
        offsets = torch.stack([o for o, _ in self.calls], dim=1)
        weights = torch.stack([w for _, w in self.calls], dim=1)
        return offsets, weights

    def weighted_offsets(self) -> Tensor:
        """``d = sum_p A_p Delta_p`` per sample, level, query and head: ``(B, K, M, H)``."""
        offsets, weights = self.offsets_and_weights()
        return weighted_offsets(offsets, weights)


def weighted_offsets(offsets: Tensor, weights: Tensor) -> Tensor:
    """Fig. 4: ``d_q = sum_p A_{q,p} Delta_{q,p}`` over the last (points) dim."""
    return (weights * offsets).sum(-1)


@torch.no_grad()
def collect_offsets(
    model: nn.Module, batches: Iterable[Mapping[str, Any]], raw: bool = False
) -> dict[str, np.ndarray]:
    """Run ``model`` over ``batches`` (collated grounding batches on the model's device).

    Returns numpy arrays over the N samples: ``weighted_offsets`` ``(N, K, M, H)``,
    ``references`` ``(N, K, M, 2)`` (the (centre, width) each level sampled around; -1 / +1
    of an offset are ``centre -/+ width / 2``), ``scores`` ``(N, M)`` (final-level class
    probability, to weight or filter queries), ``qid`` ``(N,)``; with ``raw`` also ``offsets``
    and ``weights`` ``(N, K, M, H, P)``.
    """
    recorder = OffsetRecorder(model)
    refs_per_call: list[Tensor] = []

    def keep_refs(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        refs_per_call.append(args[1].detach().float())

    handles = [s.register_forward_hook(keep_refs) for s in recorder.samplers]
    parts: dict[str, list[np.ndarray]] = {}
    try:
        with recorder:
            for batch in batches:
                recorder.clear()
                refs_per_call.clear()
                out = model(
                    batch["video_feats"],
                    batch["video_mask"],
                    batch["text_feats"],
                    batch["text_mask"],
                )
                offsets, weights = recorder.offsets_and_weights()
                got = {
                    "weighted_offsets": weighted_offsets(offsets, weights),
                    "references": torch.stack(refs_per_call, dim=1),
                    "scores": out["pred_logits"].float().sigmoid(),
                }
                if raw:
                    got.update(offsets=offsets, weights=weights)
                for key, value in got.items():
                    parts.setdefault(key, []).append(value.cpu().numpy())
                parts.setdefault("qid", []).append(
                    np.asarray([str(m["qid"]) for m in batch["metas"]])
                )
    finally:
        for h in handles:
            h.remove()
    if not parts:
        raise OffsetsError("no batches: the split is empty")
    return {k: np.concatenate(v, axis=0) for k, v in parts.items()}


def summarize(weighted: np.ndarray) -> np.ndarray:
    """Fig. 4 / Fig. A curves: mean of ``d`` over samples and queries, ``(N, K, M, H) -> (K, H)``."""
    return weighted.mean(axis=(0, 2))


def dump_offsets(
    run_dir: str | Path,
    split: str = "val",
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    checkpoint: str = "best",
    batch_size: int | None = None,
    device: str | None = None,
    raw: bool = False,
) -> dict[str, Any]:
    """Record the offsets of a trained run on ``split`` and write them to ``out`` (``.npz``).

    ``out`` defaults to ``run_dir/offsets_<split>.npz``. Returns ``{"path", "checkpoint",
    "num_rows", "mean": (K, H) array}``.
    """
    from sidetune.grounding.predictor import load_split
    from sidetune.grounding.runs import load_grounding_config
    from sidetune.utils.io import atomic_save

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise OffsetsError(f"{cfg_path}: not found; is {run_dir} a grounding run directory?")
    saved = load_grounding_config(cfg_path, overrides)
    if saved.model.attention == "standard_ca" or "rdsa" not in saved.model.sparse_modules:
        raise OffsetsError(
            f"{cfg_path}: the model has no deformable video attention (model.attention="
            f"{saved.model.attention}, model.sparse_modules={list(saved.model.sparse_modules)}): "
            "there are no offsets to record"
        )
    run = load_split(run_dir, split, overrides, checkpoint, batch_size, device)
    cfg, ckpt = run.cfg, run.checkpoint
    arrays = collect_offsets(run.model, run.loader, raw=raw)
    arrays["attention"] = np.asarray(cfg.model.attention)
    arrays["rdsa_use_latent"] = np.asarray(cfg.model.rdsa_use_latent)
    path = Path(out) if out is not None else run_dir / f"offsets_{split}.npz"

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a path
            np.savez(f, allow_pickle=False, **arrays)

    atomic_save(path, save)
    return {
        "path": path,
        "checkpoint": ckpt,
        "num_rows": int(arrays["qid"].shape[0]),
        "mean": summarize(arrays["weighted_offsets"]),
    }


__all__ = [
    "OffsetRecorder",
    "OffsetsError",
    "collect_offsets",
    "dump_offsets",
    "summarize",
    "weighted_offsets",
]
