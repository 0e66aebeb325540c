"""Interleaved A/B of the SDST training step: the pre-issue-8 defaults against the current ones.

old: RDSA hybrid (``rdsa_use_latent=true``), focal loss / #GT (``cls_normalization=num_spans``),
     same-video negatives kept (``align_same_video=keep``).
new: the defaults: Eq. 10-11 RDSA, Eq. 17 focal normalisation, same-video negatives masked
     (the batch holds 16 videos x 2 queries, so the mask is exercised).

Paper shapes (``bench_sdst_step.make_batch``: batch 32, T=75, K=4, L=32, M=30, F_v=768,
F_t=4096). The two setups alternate step by step in one process, so a shared machine slows
both alike; reports process CPU seconds per step (less sensitive to load) and wall seconds.

    python bench/bench_sdst_defaults.py --steps 8 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

# The script's own folder is on sys.path when run as `python bench/bench_sdst_defaults.py`.
from bench_sdst_step import make_batch
from sidetune.engine import TrainConfig, build_optimizer, param_groups
from sidetune.grounding.losses import LossConfig, SDSTCriterion
from sidetune.grounding.model import SDSTConfig, build_sdst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--steps", type=int, default=8, help="timed steps per setup")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    shapes = argparse.Namespace(
        batch_size=32, levels=4, clips=75, tokens=32, queries=30, video_dim=768, text_dim=4096
    )
    batch = make_batch(shapes, torch.device("cpu"))
    inputs = [batch[k] for k in ("video_feats", "video_mask", "text_feats", "text_mask")]
    old = (
        SDSTConfig(text_dim=4096, rdsa_use_latent=True),
        LossConfig(cls_normalization="num_spans", align_same_video="keep"),
        None,
    )
    new = (SDSTConfig(text_dim=4096), LossConfig(), torch.arange(32) // 2)
    setups: dict[str, tuple[Any, ...]] = {}
    for name, (model_cfg, loss_cfg, video_ids) in {"old": old, "new": new}.items():
        torch.manual_seed(0)
        model = build_sdst(model_cfg).train()
        train_cfg = TrainConfig()
        optimizer = build_optimizer(param_groups(model, train_cfg), train_cfg)
        targets = dict(batch["targets"])
        if video_ids is not None:
            targets["video_ids"] = video_ids
        setups[name] = (model, SDSTCriterion(loss_cfg), optimizer, targets)

    def step(name: str) -> tuple[float, float]:
        model, criterion, optimizer, targets = setups[name]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        loss = criterion(model(*inputs), targets)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 35.0)
        optimizer.step()
        return time.process_time() - cpu0, time.perf_counter() - wall0

    for name in setups:  # warm-up
        step(name)
        step(name)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
    for i in range(args.steps):
        for name in ("old", "new") if i % 2 == 0 else ("new", "old"):
            results[name].append(step(name))
    for name, rows in results.items():
        cpu, wall = [r[0] for r in rows], [r[1] for r in rows]
        print(
            f"{name}: CPU s/step median {statistics.median(cpu):.3f} (min {min(cpu):.3f}), "
            f"wall median {statistics.median(wall):.3f} (min {min(wall):.3f}); "
            f"{len(rows)} steps, {args.threads} thread(s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
