"""InternVideo2 vision encoder (1B / 6B) with the attention-pooling head and intermediates.

Architecture (InternVideo2 paper + the released configs): a ViT over space-time patches —
``patch_embed.proj`` is a Conv3d with kernel ``(tubelet, 14, 14)``; a CLS token; a learnable
joint space-time ``pos_embed`` ``(1, 1 + T*h*w, D)`` (plus ``img_pos_embed`` for single images);
pre-norm blocks with RMSNorm, q/k RMSNorm over the full width, LayerScale and a GELU MLP; no
final norm. The attention pool ``clip_projector`` (queries = token mean, LayerNorm'd q/k/v
inputs, biased q/k/v projections, output projection to 768) gives the clip embedding.

Parameter names follow the released checkpoints, so a state dict keyed
``vision_encoder.blocks.{i}.attn.qkv.weight`` etc. (optionally wrapped in ``module`` /
``model``) loads directly — see :func:`load_internvideo2_vision`. What was matched, and assumed:

* matched (from the public configs / code layout): ``patch_embed.proj.{weight,bias}``,
  ``cls_token``, ``pos_embed``, ``img_pos_embed``, ``blocks.{i}.norm1.weight``,
  ``blocks.{i}.attn.{qkv.weight, q_norm.weight, k_norm.weight, proj.weight, proj.bias}``,
  ``blocks.{i}.ls1.gamma``, ``blocks.{i}.norm2.weight``, ``blocks.{i}.mlp.{fc1,fc2}.{weight,bias}``,
  ``blocks.{i}.ls2.gamma``, ``clip_projector.{norm1_q,norm1_k,norm1_v}.{weight,bias}``,
  ``clip_projector.cross_attn.{q,k,v}.weight``, ``clip_projector.cross_attn.{q,k,v}_bias``,
  ``clip_projector.cross_attn.proj.{weight,bias}``; 1B: 40 blocks, width 1408, 16 heads,
  MLP 6144 (ratio 48/11), no qkv bias; 6B: 48 blocks, width 3200, 25 heads, MLP 12800; attention
  pool 16 heads for both; RMSNorm eps 1e-6, pool LayerNorm eps 1e-5.
* ignored on load (distillation-only heads, unused at inference): ``clip_pos_embed``,
  ``clip_img_pos_embed``, ``clip_decoder.*``, ``final_clip_decoder.*``.
* GELU: exact (erf) by default, as the official ``Mlp`` (``nn.GELU``) that the demo runs
  with ``use_fused_mlp=False``; the training and zero-shot retrieval configs use flash-attn's
  ``FusedMLP``, whose activation is the tanh approximation: ``gelu_approximate="tanh"``
  (``create_backbone(..., gelu="tanh")``, ``--gelu tanh``) matches those.

Temporal handling: one clip of ``N`` frames is one input of ``N`` frames (tubelet 1 -> ``N``
temporal positions). On load, ``pos_embed`` is adapted from the checkpoint's frame count
(``checkpoint_frames``, 4 for the stage-2 releases) and grid to the model's: linear in time,
bicubic in space, as ``interpolate_pos_embed_internvideo2_new``; inputs of yet another size
are adapted on the fly the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from sidetune.backbones.base import Pool, VideoBackbone, check_clips, check_pool
from sidetune.backbones.checkpoint import (
    Adapter,
    CheckpointError,
    LoadReport,
    load_checked,
    read_state_dict,
    select_prefix,
)
from sidetune.nn.linear import linear
from sidetune.video.transforms import IMAGENET_MEAN, IMAGENET_STD, video_transform

# Keys of the released checkpoints that exist only for stage-1/2 distillation.
IGNORED_KEYS = ("clip_pos_embed", "clip_img_pos_embed", "clip_decoder.*", "final_clip_decoder.*")


@dataclass(frozen=True)
class InternVideo2Config:
    img_size: int = 224
    patch_size: int = 14
    num_frames: int = 4  # frames the pos_embed is built for (stage-2 1B release: 4)
    tubelet_size: int = 1
    embed_dim: int = 1408
    depth: int = 40
    num_heads: int = 16
    mlp_hidden_dim: int = 6144
    qkv_bias: bool = False
    qk_norm: bool = True
    init_values: float = 1e-5  # LayerScale init (random-weight models only)
    clip_embed_dim: int = 768
    attn_pool_num_heads: int = 16
    sep_image_video_pos_embed: bool = True
    norm_eps: float = 1e-6
    gelu_approximate: str = "none"  # "none": exact erf GELU; "tanh": the fused MLP's
    checkpoint_frames: int = 4  # frames the checkpoint's pos_embed was trained for (loading)

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size


def internvideo2_1b_config(**kw: object) -> InternVideo2Config:
    """InternVideo2-1B (stage 2, 224px): 40 x 1408, 16 heads, MLP 6144, pool -> 768."""
    return replace(InternVideo2Config(), **kw)  # type: ignore[arg-type]


def internvideo2_6b_config(**kw: object) -> InternVideo2Config:
    """InternVideo2-6B (stage 2, 224px): 48 x 3200, 25 heads, MLP 12800, pool -> 768."""
    base = InternVideo2Config(embed_dim=3200, depth=48, num_heads=25, mlp_hidden_dim=12800)
    return replace(base, **kw)  # type: ignore[arg-type]


def internvideo2_tiny_config(**kw: object) -> InternVideo2Config:
    """A tiny random-weight variant of the same classes for tests (28px, 4 blocks x 64)."""
    base = InternVideo2Config(
        img_size=28, embed_dim=64, depth=4, num_heads=4, mlp_hidden_dim=128,
        clip_embed_dim=32, attn_pool_num_heads=4, init_values=0.5,
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 (as the reference does) so bf16 inference stays stable.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    """Multi-head self-attention; q/k RMSNorm over the full width (all heads at once)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, qk_norm: bool, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm: nn.Module = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.k_norm: nn.Module = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (t.reshape(b, n, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, approximate: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate=approximate)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both residual branches."""

    def __init__(self, cfg: InternVideo2Config) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = RMSNorm(d, cfg.norm_eps)
        self.attn = Attention(d, cfg.num_heads, cfg.qkv_bias, cfg.qk_norm, cfg.norm_eps)
        self.ls1 = LayerScale(d, cfg.init_values)
        self.norm2 = RMSNorm(d, cfg.norm_eps)
        self.mlp = Mlp(d, cfg.mlp_hidden_dim, cfg.gelu_approximate)
        self.ls2 = LayerScale(d, cfg.init_values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: InternVideo2Config) -> None:
        super().__init__()
        p = cfg.patch_size
        self.proj = nn.Conv3d(
            3, cfg.embed_dim, kernel_size=(cfg.tubelet_size, p, p), stride=(cfg.tubelet_size, p, p)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, N, H, W)`` -> tokens ``(B, T*h*w, D)`` (time-major)."""
        return self.proj(x).flatten(2).transpose(1, 2)


class CrossAttention(nn.Module):
    """Cross attention of the pooling head: separate q/k/v weights with separate biases."""

    def __init__(self, dim: int, num_heads: int, out_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.k_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, nq, d = q.shape
        h = self.num_heads
        qh = linear(q, self.q.weight, self.q_bias).reshape(b, nq, h, -1).transpose(1, 2)
        kh = linear(k, self.k.weight, self.k_bias).reshape(b, k.shape[1], h, -1).transpose(1, 2)
        vh = linear(v, self.v.weight, self.v_bias).reshape(b, v.shape[1], h, -1).transpose(1, 2)
        out = F.scaled_dot_product_attention(qh, kh, vh)
        return self.proj(out.transpose(1, 2).reshape(b, nq, d))


class AttentionPool(nn.Module):
    """InternVideo2's ``clip_projector`` ("AdaptivePool" in SDST): tokens ``(B, L, D)`` -> ``(B, F)``.

    The single query is the mean of all tokens (CLS included); q/k/v inputs are LayerNorm'd.
    """

    def __init__(self, dim: int, num_heads: int, out_dim: int) -> None:
        super().__init__()
        self.norm1_q = nn.LayerNorm(dim, eps=1e-5)
        self.norm1_k = nn.LayerNorm(dim, eps=1e-5)
        self.norm1_v = nn.LayerNorm(dim, eps=1e-5)
        self.cross_attn = CrossAttention(dim, num_heads, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.norm1_q(x.mean(1, keepdim=True))
        out = self.cross_attn(q, self.norm1_k(x), self.norm1_v(x))
        return out.squeeze(1)


def interpolate_pos_embed(pos: torch.Tensor, src_t: int, dst_t: int, dst_grid: int) -> torch.Tensor:
    """Resize a joint ``(1, 1 + T*g*g, D)`` position embedding to ``dst_t`` x ``dst_grid``².

    ``src_t`` is the table's frame count (its grid ``g`` follows). As the official
    ``interpolate_pos_embed_internvideo2_new``: time first (linear), then space (bicubic), in
    the same tensor layouts; the CLS position is kept as is.
    """
    cls_pos, x = pos[:, :1], pos[:, 1:]
    d = pos.shape[-1]
    src_grid = math.isqrt(x.shape[1] // src_t) if src_t > 0 else 0
    if src_t < 1 or src_t * src_grid * src_grid != x.shape[1]:
        raise ValueError(
            f"cannot split {x.shape[1]} positions into {src_t} frames of a square grid"
        )
    if src_t != dst_t:  # (1, T*HW, D) -> (HW, D, T) -> linear -> (1, T'*HW, D)
        x = x.reshape(1, src_t, -1, d).permute(0, 2, 3, 1).reshape(-1, d, src_t)
        x = F.interpolate(x, size=dst_t, mode="linear")
        x = x.reshape(1, -1, d, dst_t).permute(0, 3, 1, 2).reshape(1, -1, d)
    if src_grid != dst_grid:  # (1, T'*g*g, D) -> (T', D, g, g) -> bicubic -> (1, T'*g'*g', D)
        x = x.reshape(dst_t, src_grid, src_grid, d).permute(0, 3, 1, 2)
        x = F.interpolate(x, size=(dst_grid, dst_grid), mode="bicubic", align_corners=False)
        x = x.permute(0, 2, 3, 1).reshape(1, -1, d)
    return torch.cat([cls_pos, x], dim=1)


class InternVideo2Vision(nn.Module):
    """The vision encoder; parameter names match the released ``vision_encoder.*`` keys."""

    def __init__(self, cfg: InternVideo2Config) -> None:
        super().__init__()
        self.cfg = cfg
        d, g = cfg.embed_dim, cfg.grid
        self.t_size = cfg.num_frames // cfg.tubelet_size
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.t_size * g * g, d))
        self.img_pos_embed: nn.Parameter | None = None
        if cfg.sep_image_video_pos_embed:
            self.img_pos_embed = nn.Parameter(torch.zeros(1, 1 + g * g, d))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.clip_projector = AttentionPool(d, cfg.attn_pool_num_heads, cfg.clip_embed_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)  # trunc_normal_ is slow at 1B scale
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for p in (self.cls_token, self.pos_embed, self.img_pos_embed):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)

    def position_embedding(self, t: int, grid: int) -> torch.Tensor:
        pos: torch.Tensor
        if t == 1 and self.img_pos_embed is not None:
            pos = self.img_pos_embed
            return pos if grid == self.cfg.grid else interpolate_pos_embed(pos, 1, 1, grid)
        if t == 1:  # no image table: average the video table over time (as the reference does)
            g2 = self.cfg.grid**2
            spatial = self.pos_embed[:, 1:].reshape(1, self.t_size, g2, -1).mean(1)
            pos = torch.cat([self.pos_embed[:, :1], spatial], dim=1)
            return pos if grid == self.cfg.grid else interpolate_pos_embed(pos, 1, 1, grid)
        if t == self.t_size and grid == self.cfg.grid:
            return self.pos_embed
        return interpolate_pos_embed(self.pos_embed, self.t_size, t, grid)

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, 3, N, H, W)`` -> tokens with CLS and positions ``(B, 1 + T*h*w, D)``."""
        x = self.patch_embed(video)
        b = x.shape[0]
        t = video.shape[2] // self.cfg.tubelet_size
        grid = video.shape[-1] // self.cfg.patch_size
        x = torch.cat([self.cls_token.expand(b, -1, -1).to(x.dtype), x], dim=1)
        return x + self.position_embedding(t, grid).to(x.dtype)

    def hidden_states(self, video: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """Token sequences after the given blocks (0 = embeddings; 1-based blocks), in order.

        Blocks past the deepest requested layer are not run.
        """
        wanted = set(layers)
        kept: dict[int, torch.Tensor] = {}
        x = self.embed(video)
        if 0 in wanted:
            kept[0] = x
        last = max(layers)
        for i, blk in enumerate(self.blocks, start=1):
            if i > last:
                break
            x = blk(x)
            if i in wanted:
                kept[i] = x
        return [kept[layer] for layer in layers]

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, 3, N, H, W)`` -> the clip embedding ``(B, clip_embed_dim)`` (final layer + pool)."""
        return self.clip_projector(self.hidden_states(video, [self.cfg.depth])[0])


def _adapt_pos_embed(model: InternVideo2Vision) -> Adapter:
    """Resize the checkpoint's position tables from what they were trained for.

    ``pos_embed`` was trained for ``cfg.checkpoint_frames`` frames (the official
    ``origin_num_frames``); its grid follows from its length. ``img_pos_embed`` has one frame.
    Never guessed from the model's own grid: a 112- or 448-px model's token count can divide
    the checkpoint's and look like a frame-count change.
    """

    def adapt(key: str, value: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        if key not in ("pos_embed", "img_pos_embed") or value.ndim != 3:
            return None
        src_t = model.cfg.checkpoint_frames if key == "pos_embed" else 1
        dst_t = model.t_size if key == "pos_embed" else 1
        try:
            return interpolate_pos_embed(value, src_t, dst_t, model.cfg.grid)
        except ValueError as exc:
            raise CheckpointError(
                f"{key} {tuple(value.shape)}: {exc}; the checkpoint's frame count is taken "
                f"as checkpoint_frames={src_t} (pass the right one)"
            ) from exc

    return adapt


def load_internvideo2_vision(
    model: InternVideo2Vision, path: str, strict: bool = True
) -> LoadReport:
    """Load the vision encoder weights of a released checkpoint (stage-1 or stage-2 file).

    Accepts a full stage-2 state dict (``vision_encoder.*`` keys are taken), a bare vision
    encoder state dict, and ``module``/``model`` wrappers or ``module.`` key prefixes.
    Position embeddings are interpolated when the frame count or image size differs.
    """
    state, _ = select_prefix(read_state_dict(path), ("vision_encoder.", "visual_encoder."))
    derived = (
        model.img_pos_embed is not None and "img_pos_embed" not in state and "pos_embed" in state
    )
    if derived:  # a checkpoint without a separate image table: average its video table over time
        adapt = _adapt_pos_embed(model)
        pos = state["pos_embed"]
        if pos.shape != model.pos_embed.shape:
            fixed = adapt("pos_embed", pos, model.pos_embed)
            pos = fixed if fixed is not None else pos
        g2 = model.cfg.grid**2
        spatial = pos[:, 1:].reshape(1, -1, g2, pos.shape[-1]).mean(1)
        state = {**state, "img_pos_embed": torch.cat([pos[:, :1], spatial], dim=1)}
    report = load_checked(
        model, state, path, ignore=IGNORED_KEYS, adapt=_adapt_pos_embed(model), strict=strict
    )
    if derived:
        report.adapted.append("img_pos_embed (derived: time-average of pos_embed)")
    return report


class InternVideo2Backbone(VideoBackbone):
    """Frozen InternVideo2 vision encoder with the intermediates API.

    ``pool="adaptive"`` applies the frozen ``clip_projector`` to each chosen layer (SDST Eq. 15)
    -> ``F = clip_embed_dim`` (768); ``"cls"`` / ``"mean"`` give ``F = embed_dim`` (1408 for 1B).
    """

    def __init__(
        self,
        cfg: InternVideo2Config,
        name: str = "internvideo2",
        frames_per_clip: int | None = None,
        transform: str = "eval",
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.name = name
        self.encoder = InternVideo2Vision(cfg)
        self.depth = cfg.depth
        self.width = cfg.embed_dim
        self.frames_per_clip = frames_per_clip or cfg.num_frames
        # Default: the official eval transform (whole frame, bicubic, no crop).
        self.transform = video_transform(transform, cfg.img_size, IMAGENET_MEAN, IMAGENET_STD)
        self.load_report: LoadReport | None = None

    def feature_dim(self, pool: Pool) -> int:
        return self.cfg.clip_embed_dim if check_pool(pool) == "adaptive" else self.cfg.embed_dim

    def load(self, path: str, strict: bool = True) -> LoadReport:
        self.load_report = load_internvideo2_vision(self.encoder, path, strict=strict)
        return self.load_report

    @torch.no_grad()
    def forward_intermediates(
        self, clips: torch.Tensor, layers: Sequence[int] | None = None, pool: Pool = "adaptive"
    ) -> torch.Tensor:
        """clips ``(B, N, 3, H, W)`` -> ``(K, B, F)``: one vector per clip for each chosen layer."""
        check_clips(clips, self.name)
        pool = check_pool(pool)
        chosen = self.resolve_layers(layers)
        video = clips.permute(0, 2, 1, 3, 4).to(self.encoder.patch_embed.proj.weight.dtype)
        hidden = torch.stack(self.encoder.hidden_states(video, chosen))  # (K, B, 1 + T*h*w, D)
        k, b = hidden.shape[:2]
        if pool == "adaptive":  # Eq. 15: the frozen final attention pool on every chosen layer
            return self.encoder.clip_projector(hidden.flatten(0, 1)).reshape(k, b, -1)
        if pool == "cls":
            return hidden[:, :, 0]
        return hidden[:, :, 1:].mean(2)
