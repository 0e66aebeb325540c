"""Classify one video with a trained or imported TDS-CLIP run: ``load_recognition_model``.

    model = load_recognition_model("runs/tds_clip_b16_ssv2")
    model.classify("video.mp4")            # [{"label": 86, "name": "...", "prob": 0.41}, ...]
    model.classify("video.mp4", views=(3, 2))   # 3 crops x 2 clips, softmax averaged

The views follow the run's ``eval.protocol`` (the authors' test views for ``ssv2`` / ``k400``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sidetune.errors import SidetuneError
from sidetune.recognition.config import RecognitionConfig
from sidetune.recognition.data import VideoDataset, VideoListError, VideoRecord


def parse_views(spec: str) -> tuple[int, int]:
    """``"3x2"`` -> ``(num_crops, num_clips)`` = (3, 2); the paper's 8x3x2 is T x crops x clips."""
    try:
        crops, clips = (int(v) for v in spec.lower().split("x"))
    except ValueError:
        raise SidetuneError(f"--views {spec!r}: expected CROPSxCLIPS, e.g. 1x1 or 3x2") from None
    if crops not in (1, 3) or clips < 1:
        raise SidetuneError(f"--views {spec!r}: crops must be 1 or 3 and clips >= 1")
    return crops, clips


class RecognitionModel:
    """A TDS-CLIP in eval mode with its config and class names; see the module docstring."""

    def __init__(
        self, model: torch.nn.Module, cfg: RecognitionConfig, names: list[str] | None
    ) -> None:
        self.model = model.eval()
        self.cfg = cfg
        self.names = names

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def name(self, label: int) -> str:
        return self.names[label] if self.names else f"class {label}"

    @torch.no_grad()
    def probabilities(
        self, video: str | Path, views: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Class probabilities of one video (softmax averaged over the views): ``(num_classes,)``."""
        from sidetune.recognition.recipe import build_eval_transform

        cfg = self.cfg
        if views is not None:
            cfg = dataclasses.replace(
                cfg, eval=dataclasses.replace(cfg.eval, num_crops=views[0], num_clips=views[1])
            )
        path = Path(video)
        if not path.is_file():
            raise SidetuneError(f"{path}: video not found")
        ds = VideoDataset(
            [VideoRecord(path, 0, None, str(path))],
            num_segments=cfg.data.num_segments,
            num_local=cfg.model.num_local_frames,
            train=False,
            transform=build_eval_transform(cfg),
            num_clips=cfg.eval.num_clips,
            protocol=cfg.eval.protocol,
        )
        frames = ds[0]["frames"].to(self.device)  # (V, T, n, 3, S, S)
        logits = torch.cat([self.model(frames[i : i + 1]) for i in range(frames.shape[0])])
        return logits.float().softmax(-1).mean(0).cpu()

    def classify(
        self, video: str | Path, views: tuple[int, int] | None = None, top_k: int = 5
    ) -> list[dict[str, Any]]:
        """Top-k ``{"label", "name", "prob"}`` of one video, most probable first."""
        probs = self.probabilities(video, views)
        values, labels = probs.topk(min(top_k, probs.numel()))
        return [
            {"label": int(i), "name": self.name(int(i)), "prob": float(p)}
            for p, i in zip(values.tolist(), labels.tolist())
        ]


def load_recognition_model(
    run_dir: str | Path,
    which: str = "best",
    overrides: Sequence[str] = (),
    device: str | None = None,
) -> RecognitionModel:
    """A run directory (trained, or written by ``sidetune import``) -> :class:`RecognitionModel`.

    Class names come from ``data.labels`` when that file exists (otherwise labels are ids).
    """
    from sidetune.engine import checkpoint_dir, load_weights, resolve_device
    from sidetune.recognition.recipe import build_model, load_names, load_recognition_config

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise SidetuneError(f"{run_dir / 'config.yaml'}: not found; is {run_dir} a run directory?")
    cfg = load_recognition_config(run_dir / "config.yaml", overrides)
    try:
        names = load_names(cfg)
    except VideoListError:
        names = None  # the labels file of the training machine is not here: report ids
    model = build_model(cfg)
    load_weights(model, checkpoint_dir(run_dir, which))
    model.to(resolve_device(device or cfg.train.device))
    return RecognitionModel(model, cfg, names)
