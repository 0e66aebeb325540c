"""TDS-CLIP: frozen CLIP ViT (spatial encoder) + TDS side network (temporal encoder) + head.

Forward, for frames ``(B, T, n, 3, H, W)`` (n local frames per segment, centre = sampled)::

    S_0   = sme_adapter(frames)                                  # Eq. 2-3, (B, T, N, D)
    Z_0   = pre_layrnorm(embeddings(centre frames))              # frozen, no grad
    for i in layers:
        Z_i  = clip_layer_i(Z_{i-1})                             # frozen, no grad
        P_i  = Linear_i(LayerNorm_i(Z_i))                        # (BT, 1 + N, D), trainable
        S    = (1 - w) * S + w * P_i[:, 1:]                      # side connection, w = 0.5
        S    = TDSBlock_i(S, cls = P_i[:, 0])                    # temporal branch + TD, attention, MLP
    logits = fc(dropout(mean_{T,N} BN3d(S)))

CLIP runs under ``torch.no_grad()`` layer by layer, so its activations are freed as soon as the
next layer has run; only the taps ``Z_i`` (the side projections' inputs) are kept for backward.
The SME-Adapter output enters as the initial side stream and is fused with the first CLIP
layer's projection before the first TDS block (the paper: "S will be used as an input to the
side network and integrated with the ViT output of the first frozen CLIP into the TDS Block").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from sidetune.errors import SidetuneError
from sidetune.nn.linear import Linear, use_fast_linears
from sidetune.recognition.adapters import SMEAdapter, TokenBatchNorm
from sidetune.recognition.config import TDSModelConfig
from sidetune.recognition.lean_saving import lean_saving
from sidetune.recognition.side_network import SideProjection, TDSBlock, build_tds_block, run_block
from sidetune.utils.params import freeze

# CLIPVisionConfig fields of the released OpenAI towers (transformers layout).
CLIP_PRESETS: dict[str, dict[str, Any]] = {
    "clip-vit-b16": dict(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        image_size=224, patch_size=16, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    ),
    "clip-vit-l14": dict(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=224, patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    ),
    # A few-kB random tower for tests and the synthetic benchmark.
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=2,
        image_size=32, patch_size=8, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    ),
}  # fmt: skip


class ModelBuildError(SidetuneError, ValueError):
    """A model config that cannot be built (unknown backbone, missing checkpoint, ...)."""


def td_layer_mask(spec: str, num_layers: int) -> list[bool]:
    """Which layers get a TD-Adapter: ``all``, ``first_half``, ``second_half``, ``none``,
    ``"0,3,5"`` or ``"0-5"`` (0-based, inclusive ranges). Table 4's "layers 1-6" is ``first_half``.
    """
    half = num_layers // 2
    named = {
        "all": range(num_layers),
        "first_half": range(half),
        "second_half": range(half, num_layers),
        "none": range(0),
    }
    chosen: set[int] = set()
    if spec in named:
        chosen = set(named[spec])
    else:
        try:
            for part in spec.split(","):
                if "-" in part:
                    a, b = part.split("-")
                    chosen.update(range(int(a), int(b) + 1))
                elif part.strip():
                    chosen.add(int(part))
        except ValueError:
            raise ModelBuildError(
                f"model.td_layers: {spec!r} is not all/first_half/second_half/none or a list like '0,1,4-7'"
            ) from None
        bad = sorted(i for i in chosen if not 0 <= i < num_layers)
        if bad:
            raise ModelBuildError(f"model.td_layers: layers {bad} outside 0..{num_layers - 1}")
    return [i in chosen for i in range(num_layers)]


def build_clip_vision(cfg: TDSModelConfig, weights: bool = True) -> Any:
    """The frozen CLIP vision tower (``transformers.CLIPVisionModel``), loaded from a local dir.

    ``clip_checkpoint`` may be a ``CLIPModel`` or ``CLIPVisionModel`` directory; nothing is
    downloaded. Without a checkpoint the preset architecture gets random weights (tests,
    synthetic runs, memory benchmarks). ``weights=False`` (``sidetune info``) reads only the
    checkpoint's config when it exists, and falls back to the preset when it does not.
    """
    from transformers import CLIPVisionConfig, CLIPVisionModel

    if cfg.clip_checkpoint and not weights:
        path = Path(cfg.clip_checkpoint)
        if path.is_dir():
            try:
                vcfg = CLIPVisionConfig.from_pretrained(str(path), local_files_only=True)
            except (OSError, ValueError) as exc:
                raise ModelBuildError(
                    f"model.clip_checkpoint: cannot read the config in {path}: {exc}"
                ) from exc
            vcfg._attn_implementation = "sdpa"
            return freeze(CLIPVisionModel(vcfg))
        cfg = dataclasses.replace(cfg, clip_checkpoint=None)
    if cfg.clip_checkpoint and Path(cfg.clip_checkpoint).is_file():
        # an OpenAI CLIP release (ViT-B-16.pt): tensors of its vision tower, mapped
        from sidetune.interop.tds_clip import load_openai_clip_vision

        return freeze(load_openai_clip_vision(cfg.clip_checkpoint))
    if cfg.clip_checkpoint:
        path = Path(cfg.clip_checkpoint)
        if not path.is_dir():
            raise ModelBuildError(
                f"model.clip_checkpoint: {path} is neither a transformers directory nor an "
                "OpenAI CLIP .pt file"
            )
        try:
            model = CLIPVisionModel.from_pretrained(
                str(path), local_files_only=True, attn_implementation="sdpa"
            )
        except (OSError, ValueError) as exc:
            raise ModelBuildError(f"model.clip_checkpoint: cannot load {path}: {exc}") from exc
    else:
        if cfg.backbone not in CLIP_PRESETS and cfg.backbone != "custom":
            raise ModelBuildError(
                f"model.backbone: unknown {cfg.backbone!r}; known: {', '.join([*CLIP_PRESETS, 'custom'])}"
            )
        fields = dict(CLIP_PRESETS.get(cfg.backbone, CLIP_PRESETS["tiny"]))
        fields.update(cfg.clip_config)
        try:
            vcfg = CLIPVisionConfig(**fields)
        except (TypeError, ValueError) as exc:
            raise ModelBuildError(f"model.clip_config: {exc}") from exc
        vcfg._attn_implementation = "sdpa"
        # Own RNG stream: the same config always gives the same frozen random CLIP, whatever
        # the training seed or what was drawn before.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.random_backbone_seed)
            model = CLIPVisionModel(vcfg)
    return freeze(model)


class TDSHead(nn.Module):
    """BatchNorm3d -> mean over (T, N) -> dropout -> Linear. x: (B, T, N, D) -> (B, classes)."""

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = TokenBatchNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.fc = Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.norm(x).mean(dim=(1, 2))))


class TDSCLIP(nn.Module):
    """Frozen CLIP + TDS side network + head; sub-modules come in built (composition).

    Args:
        clip: ``transformers.CLIPVisionModel`` (frozen here, whatever its state).
        sme: the side stem (:class:`SMEAdapter`).
        projections: one :class:`SideProjection` per CLIP layer.
        blocks: one :class:`TDSBlock` per CLIP layer.
        head: :class:`TDSHead`.
        fuse_weight: w in ``S <- (1 - w) S + w P_i``.
        grad_checkpointing: recompute side blocks in backward.
        lean_saving: keep for backward only what elementwise ops cannot rebuild cheaply.

    ``forward(frames)``: frames (B, T, n, 3, H, W) float, CLIP-normalised -> logits (B, classes).
    """

    clip: Any  # transformers.CLIPVisionModel (untyped library module)

    def __init__(
        self,
        clip: Any,
        sme: SMEAdapter,
        projections: list[SideProjection],
        blocks: list[TDSBlock],
        head: TDSHead,
        fuse_weight: float = 0.5,
        grad_checkpointing: bool = False,
        lean_saving: bool = True,
    ) -> None:
        super().__init__()
        vcfg = clip.config
        if len(projections) != vcfg.num_hidden_layers or len(blocks) != vcfg.num_hidden_layers:
            raise ValueError("one side projection and one TDS block per CLIP layer are required")
        self.clip = use_fast_linears(freeze(clip))  # CPU: its matmuls on oneDNN (nn/linear.py)
        self.sme = sme
        self.projections = nn.ModuleList(projections)
        self.blocks = nn.ModuleList(blocks)
        dim = head.fc.in_features
        grid = vcfg.image_size // vcfg.patch_size
        self.pos_embed = nn.Parameter(torch.randn(grid * grid, dim) * 0.01)  # shared by all blocks
        self.head = head
        self.fuse_weight = fuse_weight
        self.grad_checkpointing = grad_checkpointing
        self.lean_saving = lean_saving  # rebuild cheap tensors in backward (see lean_saving.py)

    @property
    def side_blocks(self) -> list[TDSBlock]:
        return [cast(TDSBlock, b) for b in self.blocks]

    def train(self, mode: bool = True) -> TDSCLIP:
        super().train(mode)
        self.clip.eval()  # frozen: dropout off whatever the side network does
        return self

    @torch.no_grad()
    def clip_embed(self, images: Tensor) -> Tensor:
        """images (M, 3, H, W) -> Z_0 (M, 1 + N, W): patch + CLS embeddings, pre-LayerNorm."""
        return self.clip.pre_layrnorm(self.clip.embeddings(images))

    @torch.no_grad()
    def clip_layer(self, i: int, hidden: Tensor) -> Tensor:
        out: Any = self.clip.encoder.layers[i](hidden, None)
        return out[0] if isinstance(out, tuple) else out

    def forward(self, frames: Tensor) -> Tensor:
        # checkpointed blocks keep only their inputs already (and must recompute the same ops)
        with lean_saving(self.lean_saving and not self.grad_checkpointing):
            return self._forward(frames)

    def _forward(self, frames: Tensor) -> Tensor:
        b, t, n = frames.shape[:3]
        side = self.sme(frames)  # (B, T, N, D)
        hidden = self.clip_embed(frames[:, :, n // 2].flatten(0, 1))
        w = self.fuse_weight
        for i, (proj, block) in enumerate(zip(self.projections, self.blocks)):
            hidden = self.clip_layer(i, hidden)
            tap = proj(hidden).unflatten(0, (b, t))  # (B, T, 1 + N, D)
            side = (1.0 - w) * side + w * tap[:, :, 1:]
            side = run_block(
                cast(TDSBlock, block), side, tap[:, :, 0], self.pos_embed, self.grad_checkpointing
            )
        return self.head(side)


def build_tds_clip(cfg: TDSModelConfig, clip: Any = None) -> TDSCLIP:
    """TDS-CLIP from a model config (``clip`` may be passed in to share a loaded tower)."""
    clip = clip if clip is not None else build_clip_vision(cfg)
    vcfg = clip.config
    depth = vcfg.num_hidden_layers
    dim = cfg.side_dim
    heads = cfg.side_heads or max(1, dim // 64)
    mask = td_layer_mask(cfg.td_layers, depth) if cfg.td_adapter else [False] * depth
    blocks = [
        build_tds_block(
            dim,
            heads,
            mlp_ratio=cfg.mlp_ratio,
            td_adapter=mask[i],
            td_reference=cfg.td_reference,
            td_kernel=cfg.td_kernel,
            td_reduction=cfg.td_reduction,
            drop_path=cfg.drop_path * i / max(1, depth - 1),
            depth=depth,
        )
        for i in range(depth)
    ]
    for block in blocks:
        block.attention.recompute = cfg.lean_attention
        block.mlp.recompute = cfg.lean_mlp
    projections = [SideProjection(vcfg.hidden_size, dim, vcfg.layer_norm_eps) for _ in range(depth)]
    sme = SMEAdapter(
        dim,
        vcfg.patch_size,
        cfg.num_local_frames,
        cfg.sme_rgb_weight,
        cfg.sme_diff_weight,
        cfg.stem_temporal_kernel,
    )
    head = TDSHead(dim, cfg.num_classes, cfg.dropout)
    return TDSCLIP(
        clip,
        sme,
        projections,
        blocks,
        head,
        cfg.fuse_weight,
        cfg.grad_checkpointing,
        cfg.lean_saving,
    )


def tds_clip_b16(num_classes: int = 174, **overrides: Any) -> TDSCLIP:
    """TDS-CLIP-B/16 of the paper: D = 320, 12 blocks, n = 5, TD on all layers."""
    cfg = dataclasses.replace(
        TDSModelConfig(),
        backbone="clip-vit-b16",
        side_dim=320,
        num_classes=num_classes,
        **overrides,
    )
    return build_tds_clip(cfg)


def tds_clip_l14(num_classes: int = 174, **overrides: Any) -> TDSCLIP:
    """TDS-CLIP-L/14 of the paper: D = 512, 24 blocks, n = 5, TD on all layers."""
    cfg = dataclasses.replace(
        TDSModelConfig(),
        backbone="clip-vit-l14",
        side_dim=512,
        num_classes=num_classes,
        **overrides,
    )
    return build_tds_clip(cfg)
