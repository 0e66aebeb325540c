"""Time SDSTCriterion forward + backward (matcher included) at QVHighlights training shapes.

    python bench_criterion.py --threads 2 [--batch 32 --queries 30 --levels 4 --clips 75 --dim 256]

Prints a table and, with ``--out``, writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch

from sidetune.grounding.losses import TERMS, LossConfig, SDSTCriterion
from sidetune.grounding.span_utils import pad_spans


def make_batch(
    b: int, m: int, k: int, t: int, f: int, seed: int = 0
) -> tuple[dict, dict, list, torch.Tensor]:
    """Leaf tensors shaped like SDST outputs, targets, the leaves, and the clip mask."""
    g = torch.Generator().manual_seed(seed)

    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).requires_grad_()

    lengths = torch.randint(t // 2, t + 1, (b,), generator=g)
    mask = torch.arange(t)[None] < lengths[:, None]
    raw = {
        "logits": leaf(k, b, m),
        "spans": leaf(k, b, m, 2),
        "act": leaf(b, m),
        "sal": leaf(b, t),
        "video": leaf(b, k, t, f),
        "text": leaf(b, k, f),
    }
    spans, sal = [], torch.zeros(b, t)
    for i in range(b):
        n = int(torch.randint(1, 4, (1,), generator=g))
        s = torch.rand(n, 2, generator=g)
        s[:, 1] = 0.02 + 0.3 * s[:, 1]
        spans.append(s)
        length = int(lengths[i])
        lo = int(torch.randint(0, length // 2, (1,), generator=g))
        hi = min(length, lo + length // 4 + 1)
        sal[i, lo:hi] = torch.randint(1, 13, (hi - lo,), generator=g).float()
    return raw, {"spans": spans, "saliency": sal * mask}, list(raw.values()), mask


def outputs_from(raw: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, Any]:
    spans = raw["spans"].sigmoid()
    k = spans.shape[0]
    return {
        "pred_logits": raw["logits"][-1],
        "pred_spans": spans[-1],
        "pred_actionness": raw["act"].sigmoid(),
        "saliency": torch.tanh(raw["sal"]),
        "aux_outputs": [
            {"pred_logits": raw["logits"][i], "pred_spans": spans[i]} for i in range(k - 1)
        ],
        "video_levels": raw["video"],
        "text_pooled": raw["text"],
        "video_mask": mask,
    }


def time_ms(fn: Any, iters: int) -> tuple[float, float, float]:
    """Median and min wall time, and median process CPU time (less sensitive to a busy host)."""
    for _ in range(3):
        fn()
    wall, cpu = [], []
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return statistics.median(wall), min(wall), statistics.median(cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--queries", type=int, default=30)
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--clips", type=int, default=75)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    raw, targets, leaves, mask = make_batch(a.batch, a.queries, a.levels, a.clips, a.dim)

    rows: dict[str, tuple[float, float, float]] = {}

    def step(crit: SDSTCriterion) -> None:
        for leaf in leaves:
            leaf.grad = None
        crit(outputs_from(raw, mask), targets)["loss"].backward()

    rows["all terms fwd+bwd"] = time_ms(lambda: step(SDSTCriterion(LossConfig())), a.iters)

    def fwd() -> None:
        with torch.no_grad():
            SDSTCriterion(LossConfig())(outputs_from(raw, mask), targets)

    rows["all terms fwd (no grad)"] = time_ms(fwd, a.iters)
    for term in TERMS:
        cfg = LossConfig(disabled=[t for t in TERMS if t != term])
        rows[f"  only {term} fwd+bwd"] = time_ms(lambda c=cfg: step(SDSTCriterion(c)), a.iters)
    matcher = LossConfig().build_matcher()
    gt, gt_mask = pad_spans(targets["spans"])
    sizes = [len(s) for s in targets["spans"]]
    logits, spans = raw["logits"].detach(), raw["spans"].detach().sigmoid()
    rows["matcher (all levels)"] = time_ms(lambda: matcher.match(logits, spans, gt, sizes), a.iters)
    torch_matcher = LossConfig(matcher_solver="torch").build_matcher()
    rows["matcher, torch solver"] = time_ms(
        lambda: torch_matcher.match_dense(logits, spans, gt, gt_mask), a.iters
    )

    print(
        f"SDSTCriterion  B={a.batch} M={a.queries} K={a.levels} T={a.clips} F={a.dim} "
        f"threads={torch.get_num_threads()}"
    )
    print(f"{'what':32s} {'median ms':>10s} {'min ms':>8s} {'cpu ms':>8s}")
    for name, (med, best, cpu) in rows.items():
        print(f"{name:32s} {med:10.1f} {best:8.1f} {cpu:8.1f}")
    if a.out:
        with open(a.out, "w", encoding="utf-8") as fh:
            ms = {k: {"median": v[0], "min": v[1], "cpu_median": v[2]} for k, v in rows.items()}
            json.dump({"args": vars(a), "ms": ms}, fh, indent=2)


if __name__ == "__main__":
    main()
