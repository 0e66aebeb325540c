"""Pictures of grounding results: the saliency curve over time, the predicted moments as bars
(score labels), and the ground truth when known. matplotlib with the headless Agg backend.

Used by ``sidetune ground --plot`` and ``sidetune plot --pred preds.jsonl --gt gt.jsonl --qid N``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sidetune.utils.io import atomic_path

Window = tuple[float, float]
Scored = tuple[float, float, float]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display: works on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def draw_panel(
    ax: Any,
    saliency: Sequence[float],
    clip_len: float,
    duration: float,
    moments: Sequence[Scored],
    gt: Sequence[Window] | None = None,
    title: str = "",
    top: int = 5,
) -> None:
    """One axes: saliency as a step curve, moments as labelled bars under it, GT shaded."""
    import numpy as np

    sal = np.asarray(saliency, dtype=np.float64)
    edges = np.minimum(np.arange(len(sal) + 1) * clip_len, max(duration, len(sal) * clip_len))
    lo, hi = (float(sal.min()), float(sal.max())) if sal.size else (0.0, 1.0)
    span = hi - lo if hi > lo else 1.0
    for s, e in gt or ():
        ax.axvspan(s, e, color="#2ca02c", alpha=0.18, lw=0)
    if sal.size:
        ax.stairs(sal, edges, color="#1f77b4", lw=1.4, label="saliency")
    shown = list(moments)[:top]
    bar_h = 0.09 * span
    base = lo - 0.15 * span
    for rank, (s, e, score) in enumerate(shown):
        y = base - rank * 1.25 * bar_h
        color = "#d62728" if rank == 0 else "#ff9896"
        ax.barh(y, e - s, left=s, height=bar_h, color=color, edgecolor="none")
        ax.text(e, y, f" {score:.2f}", va="center", ha="left", fontsize=7)
    for i, (s, e) in enumerate(gt or ()):
        y = base + 1.4 * bar_h
        ax.barh(y, e - s, left=s, height=0.6 * bar_h, color="#2ca02c",
                label="ground truth" if i == 0 else None)  # fmt: skip
    if shown:
        ax.plot([], [], color="#d62728", lw=6, label="predicted moments (score)")
    ax.set_xlim(0, max(duration, 1e-6))
    ax.set_ylim(base - len(shown) * 1.25 * bar_h - bar_h, hi + 0.1 * span)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("saliency")
    ax.set_title(title, fontsize=9, loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False)
    ax.grid(axis="x", alpha=0.3)


def save_figure(fig: Any, out: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as PNG atomically (a crash never leaves a half-written picture)."""
    plt = _pyplot()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def plot_results(
    results: Sequence[Any],
    out: str | os.PathLike[str],
    gt: Sequence[Window] | None = None,
    title: str = "",
) -> Path:
    """One panel per :class:`~sidetune.grounding.grounder.GroundingResult`."""
    plt = _pyplot()
    n = max(1, len(results))
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.8 * n), squeeze=False)
    for ax, r in zip(axes[:, 0], results):
        moments = [(m.start, m.end, m.score) for m in r.moments]
        head = f"{title}: " if title else ""
        draw_panel(ax, r.saliency, r.clip_len, r.duration, moments, gt, f'{head}"{r.query}"')
    fig.tight_layout()
    return save_figure(fig, out)


def plot_row(
    row: dict[str, Any],
    out: str | os.PathLike[str],
    clip_len: float,
    duration: float | None = None,
    gt: Sequence[Window] | None = None,
) -> Path:
    """One official prediction row (``pred_relevant_windows``, ``pred_saliency_scores``)."""
    plt = _pyplot()
    sal = row.get("pred_saliency_scores") or []
    windows = [tuple(w) for w in row["pred_relevant_windows"]]
    dur = duration if duration is not None else max(
        [len(sal) * clip_len] + [w[1] for w in windows] + [e for _, e in gt or ()]
    )  # fmt: skip
    fig, ax = plt.subplots(figsize=(10, 3))
    title = f'qid {row["qid"]}: "{row.get("query", "")}"'
    draw_panel(ax, sal, clip_len, float(dur), windows, gt, title)  # type: ignore[arg-type]
    fig.tight_layout()
    return save_figure(fig, out)


__all__ = ["draw_panel", "plot_results", "plot_row", "save_figure"]
