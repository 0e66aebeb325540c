"""CLIP (ViT-B/32, ViT-B/16, ViT-L/14) through Hugging Face ``transformers``, frozen.

Weights load from a local directory in the Hugging Face layout (``config.json`` +
``model.safetensors``/``pytorch_model.bin``, e.g. a saved ``openai/clip-vit-base-patch16``);
nothing is downloaded. Tests build tiny random ``CLIPConfig`` models of the same classes.

Video: a clip of ``N`` frames is encoded frame by frame; each chosen layer is pooled per frame
and the ``N`` frame vectors are averaged into one clip feature. Pooling:

* ``"adaptive"`` — re-use CLIP's frozen CLS path on every layer: ``post_layernorm`` then
  ``visual_projection`` of the layer's CLS token (F = projection dim, 512 / 512 / 768);
* ``"cls"`` — the raw CLS token (F = width); ``"mean"`` — mean of patch tokens (F = width).

Text: hidden states of the chosen layers ``(K, B, L, width)``; ``project=True`` re-uses the
frozen ``final_layer_norm`` + ``text_projection`` on every token (F = projection dim).
Layers: ``0`` = embeddings (after ``pre_layrnorm`` for vision), ``l`` = output of block ``l``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPConfig, CLIPModel

from sidetune.backbones.base import (
    BackboneError,
    Pool,
    TextBackbone,
    VideoBackbone,
    check_clips,
    check_pool,
)
from sidetune.backbones.checkpoint import CheckpointError, LoadReport
from sidetune.video.transforms import CLIP_MEAN, CLIP_STD, VideoTransform

# (width, layers, heads, patch, image, projection) of the vision towers; text towers per CLIP paper.
CLIP_VARIANTS: dict[str, dict[str, Any]] = {
    "clip-vit-b32": {"vision": (768, 12, 12, 32, 224), "text": (512, 12, 8), "proj": 512},
    "clip-vit-b16": {"vision": (768, 12, 12, 16, 224), "text": (512, 12, 8), "proj": 512},
    "clip-vit-l14": {"vision": (1024, 24, 16, 14, 224), "text": (768, 12, 12), "proj": 768},
    "clip-tiny": {"vision": (32, 3, 4, 16, 32), "text": (32, 3, 4), "proj": 16},
}


def clip_config(name: str) -> CLIPConfig:
    """A ``CLIPConfig`` of a named variant (used when no checkpoint directory is given)."""
    if name not in CLIP_VARIANTS:
        raise BackboneError(
            f"unknown CLIP variant {name!r} (choose from {', '.join(CLIP_VARIANTS)})"
        )
    v = CLIP_VARIANTS[name]
    width, layers, heads, patch, image = v["vision"]
    t_width, t_layers, t_heads = v["text"]
    tiny = name == "clip-tiny"
    vocab = 64 if tiny else 49408
    text_cfg = {
        "hidden_size": t_width,
        "intermediate_size": 4 * t_width,
        "num_hidden_layers": t_layers,
        "num_attention_heads": t_heads,
        "vocab_size": vocab,
        "max_position_embeddings": 16 if tiny else 77,
        "bos_token_id": vocab - 2,
        "eos_token_id": vocab - 1,
        "pad_token_id": 1 if not tiny else 0,
    }
    vision_cfg = {
        "hidden_size": width,
        "intermediate_size": 4 * width,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "patch_size": patch,
        "image_size": image,
    }
    return CLIPConfig(text_config=text_cfg, vision_config=vision_cfg, projection_dim=v["proj"])


def load_clip_model(
    name: str, checkpoint: str | os.PathLike[str] | None, strict: bool = True
) -> tuple[CLIPModel, LoadReport | None]:
    """The full ``CLIPModel`` from a local HF directory, or random weights of variant ``name``."""
    if checkpoint is None:
        return CLIPModel(clip_config(name)).eval(), None
    path = Path(checkpoint)
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"{path}: expected a local Hugging Face CLIP directory with config.json and weights "
            "(e.g. save_pretrained of openai/clip-vit-base-patch16)"
        )
    try:
        loaded: Any = CLIPModel.from_pretrained(
            str(path), local_files_only=True, output_loading_info=True
        )
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot load CLIP weights ({exc})") from exc
    model, info = loaded
    report = LoadReport(
        path=str(path),
        loaded=len(model.state_dict()),
        missing=sorted(info.get("missing_keys", [])),
        unexpected=sorted(info.get("unexpected_keys", [])),
    )
    if strict and report.missing:
        raise CheckpointError(
            f"{path}: {len(report.missing)} weights missing: {report.missing[:12]}"
        )
    return model.eval(), report


class CLIPVideo(VideoBackbone):
    """CLIP image tower applied per frame, with the intermediates API."""

    def __init__(self, model: CLIPModel, name: str, frames_per_clip: int = 1) -> None:
        super().__init__()
        self.name = name
        self.vision = model.vision_model
        self.visual_projection = model.visual_projection
        vc: Any = model.config.vision_config
        self.depth = vc.num_hidden_layers
        self.width = int(vc.hidden_size)
        self.proj_dim = int(model.config.projection_dim or self.width)
        self.frames_per_clip = frames_per_clip
        self.transform = VideoTransform(size=vc.image_size, mean=CLIP_MEAN, std=CLIP_STD)
        self.load_report: LoadReport | None = None

    def feature_dim(self, pool: Pool) -> int:
        return self.proj_dim if check_pool(pool) == "adaptive" else self.width

    @torch.no_grad()
    def forward_intermediates(
        self, clips: torch.Tensor, layers: Sequence[int] | None = None, pool: Pool = "adaptive"
    ) -> torch.Tensor:
        """clips ``(B, N, 3, H, W)`` -> ``(K, B, F)`` (per-frame pooling, then mean over N)."""
        check_clips(clips, self.name)
        pool = check_pool(pool)
        chosen = self.resolve_layers(layers)
        b, n = clips.shape[:2]
        frames = clips.flatten(0, 1).to(self.visual_projection.weight.dtype)
        out = self.vision(pixel_values=frames, output_hidden_states=True, return_dict=True)
        hidden = torch.stack([out.hidden_states[i] for i in chosen])  # (K, B*N, 1 + P, W)
        if pool == "adaptive":  # the frozen CLS path of the last layer, re-used on each layer
            pooled = self.visual_projection(self.vision.post_layernorm(hidden[:, :, 0]))
        elif pool == "cls":
            pooled = hidden[:, :, 0]
        else:
            pooled = hidden[:, :, 1:].mean(2)
        return pooled.reshape(len(chosen), b, n, -1).mean(2)


class CLIPText(TextBackbone):
    """CLIP text tower with the intermediates API (causal transformer, EOT-pooled at the end)."""

    def __init__(self, model: CLIPModel, name: str, tokenizer: Any = None) -> None:
        super().__init__()
        self.name = name
        self.text = model.text_model
        self.text_projection = model.text_projection
        tc: Any = model.config.text_config
        self.depth = tc.num_hidden_layers
        self.width = int(tc.hidden_size)
        self.proj_dim = int(model.config.projection_dim or self.width)
        self.max_length = tc.max_position_embeddings
        self.tokenizer = tokenizer
        self.tokenizer_hint = "the CLIP checkpoint directory must hold its tokenizer files"
        self.load_report: LoadReport | None = None

    def feature_dim(self, project: bool = False) -> int:
        return self.proj_dim if project else self.width

    @torch.no_grad()
    def forward_intermediates(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        layers: Sequence[int] | None = None,
        project: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = self.resolve_layers(layers)
        out = self.text(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=True,
            return_dict=True,
        )
        hidden = torch.stack([out.hidden_states[i] for i in chosen])
        if project:  # re-use the frozen final LayerNorm + projection on every token
            hidden = self.text_projection(self.text.final_layer_norm(hidden))
        return hidden, attention_mask.bool()


def load_clip_tokenizer(path: str | os.PathLike[str]) -> Any:
    """The CLIP BPE tokenizer saved beside the weights (``vocab.json`` + ``merges.txt``)."""
    from transformers import CLIPTokenizer

    p = Path(path)
    if not ((p / "vocab.json").is_file() and (p / "merges.txt").is_file()):
        raise BackboneError(f"{p}: no CLIP tokenizer files (vocab.json, merges.txt)")
    return CLIPTokenizer.from_pretrained(str(p), local_files_only=True)
