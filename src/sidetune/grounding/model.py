"""SDST - Sparse-Dense Side-Tuner (Sec. 3): config, model, builders.

One forward unrolls the recurrence of Eq. 1 over the K intermediate levels: at level ``l`` the
dense stream (Eq. 3-4) refines ``D`` from ``V^l``/``T^l``, the sparse stream (Eq. 5-6) refines the
recurrent decoder queries ``(R, H)`` conditioned on a dense signal (Table 6), and the heads
predict a span update and a class logit (deep supervision at every level). After the last
level the saliency (Eq. 16) and the actionness (RoI pooling) are predicted.

Output dict (see :meth:`SDST.forward`)::

    pred_logits      (B, M)        class logits, final level (p = sigmoid)
    pred_spans       (B, M, 2)     normalized (center, width), final level
    pred_actionness  (B, M)        predicted max-IoU in [0, 1]
    saliency         (B, T)        cosine(D^K, T^pool_K) (Eq. 16); 0 on padded clips
    aux_outputs      list of K-1 {pred_logits, pred_spans} for levels 1..K-1
    video_levels     (B, K, T, F)  projected video V^l (Eq. 2)
    text_pooled      (B, K, F)     T^pool of every level
    video_mask       (B, T) bool
    enc_outputs      {pred_logits (B, M), pred_spans (B, M, 2)}  only for query_init pure/mixed
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from sidetune.config import ConfigError
from sidetune.grounding.dense_stream import DenseStreamLayer, LevelGates
from sidetune.grounding.heads import (
    ActionnessHead,
    AdaptiveTextPooling,
    ClassificationHead,
    SpanRegressionHead,
    saliency_scores,
)
from sidetune.grounding.rdsa import VideoAttentionBlock, build_video_attention
from sidetune.grounding.sparse_stream import (
    SPARSE_MODULES,
    QueryInitializer,
    RecurrentQueries,
    ReferencePositionEmbedding,
    SparseStreamLayer,
    refine_references,
)
from sidetune.nn.fast import fast_paths, sync_free
from sidetune.nn.mlp import MLP
from sidetune.nn.position import sinusoidal_position_embedding

Condition = Literal["raw", "post_ca", "post_sa", "post_ffn"]


@dataclass
class SDSTConfig:
    """``model.*`` keys of the grounding config. Defaults: paper Table A / the chosen ablations."""

    video_dim: int = 768
    text_dim: int = 1024
    hidden_dim: int = 256
    num_queries: int = 30  # M
    num_levels: int = 4  # K; "last-layer only" = the same features repeated K times (data side)
    num_heads: int = 8
    ffn_ratio: int = 4
    proj_layers: int = 2  # depth of the F_v / F_t MLPs (Eq. 2)
    proj_dropout: float = 0.5  # Table A "dropout 0.5": inside the F_v / F_t MLPs (see build_sdst)
    dropout: float = 0.0  # attention / FFN dropouts (Table A: 0.0)
    drop_path: float = 0.25
    text_cls: bool = True  # first text token is a CLS: excluded from CA and pooling
    shared_levels: bool = True  # Table J: one dense + one sparse layer for all K levels
    attention: Literal["rdsa", "deformable_ca", "standard_ca"] = "rdsa"  # Table 5
    query_init: Literal["learned", "pure", "mixed"] = "learned"  # Table 5 (DINO inits)
    condition: Condition = "post_ffn"  # Table 6
    sparse_modules: tuple[str, ...] = ("ca", "sa", "rdsa", "ffn")  # Table 7
    sparse_order: str = "ca-sa-rdsa-ffn"  # Table N
    num_points: int = 4  # P sampling points per head (Table A)
    rdsa_points: Literal["c", "lr", "lcr"] = "lcr"  # Table M
    rdsa_cnn: bool = True  # Table M
    # False: Eq. 10-11 as written, offsets/weights from CNN(D)[l, c, r] only. True: a linear map
    # of the decoder latent H is added to that query (a hybrid with deformable CA).
    rdsa_use_latent: bool = False
    rdsa_query_dim: int = 64
    roi_size: int = 16
    roi_scale: float = 0.0

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ConfigError:
            return ConfigError(f"model.{field}: {why}")

        for name in (
            "video_dim",
            "text_dim",
            "hidden_dim",
            "num_queries",
            "num_levels",
            "num_heads",
            "ffn_ratio",
            "proj_layers",
            "num_points",
            "rdsa_query_dim",
            "roi_size",
        ):
            if getattr(self, name) < 1:
                raise bad(name, f"must be >= 1, got {getattr(self, name)}")
        if self.hidden_dim % self.num_heads or self.hidden_dim % 4:
            raise bad(
                "hidden_dim",
                f"{self.hidden_dim} must be divisible by num_heads ({self.num_heads}) and by 4",
            )
        for name in ("proj_dropout", "dropout", "drop_path"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise bad(name, f"must be in [0, 1), got {getattr(self, name)}")
        if self.roi_scale < 0:
            raise bad("roi_scale", f"must be >= 0, got {self.roi_scale}")
        self.sparse_modules = tuple(self.sparse_modules)
        unknown = [m for m in self.sparse_modules if m not in SPARSE_MODULES]
        if unknown or len(set(self.sparse_modules)) != len(self.sparse_modules):
            raise bad(
                "sparse_modules",
                f"{list(self.sparse_modules)} must be distinct names from {list(SPARSE_MODULES)}",
            )
        order = self.sparse_order_tuple
        if sorted(order) != sorted(SPARSE_MODULES):
            raise bad(
                "sparse_order",
                f"{self.sparse_order!r} must be a '-'-joined permutation of {list(SPARSE_MODULES)}",
            )

    @property
    def sparse_order_tuple(self) -> tuple[str, ...]:
        """``"ca-sa-rdsa-ffn"`` -> names; Table N's ``Def`` is accepted for the rdsa slot."""
        names = (p.strip().lower() for p in self.sparse_order.split("-"))
        return tuple("rdsa" if n == "def" else n for n in names)

    @property
    def active_sparse_order(self) -> tuple[str, ...]:
        """The sparse-stream modules that are built, in execution order."""
        return tuple(m for m in self.sparse_order_tuple if m in self.sparse_modules)


class SDST(nn.Module):
    """Sparse-Dense Side-Tuner. Modules are built by :func:`build_sdst` and passed in.

    ``dense_layers`` / ``sparse_layers`` hold one layer (shared across levels, Eq. 1) or K
    layers (``shared_levels=False``).
    """

    def __init__(
        self,
        cfg: SDSTConfig,
        video_proj: nn.Module,
        text_proj: nn.Module,
        gates: LevelGates,
        dense_layers: nn.ModuleList,
        sparse_layers: nn.ModuleList,
        queries: RecurrentQueries,
        query_pos: ReferencePositionEmbedding,
        cls_head: ClassificationHead,
        reg_head: SpanRegressionHead,
        actionness_head: ActionnessHead,
        text_pool: AdaptiveTextPooling,
        query_init: QueryInitializer | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.video_proj, self.text_proj = video_proj, text_proj
        self.gates = gates
        self.dense_layers, self.sparse_layers = dense_layers, sparse_layers
        self.queries, self.query_pos, self.query_init = queries, query_pos, query_init
        self.cls_head, self.reg_head = cls_head, reg_head
        self.actionness_head, self.text_pool = actionness_head, text_pool

    def _check_inputs(
        self, video_feats: Tensor, video_mask: Tensor, text_feats: Tensor, text_mask: Tensor
    ) -> None:
        cfg = self.cfg
        if video_feats.ndim != 4 or text_feats.ndim != 4:
            raise ValueError(
                f"video_feats must be (B, K, T, F_v) and text_feats (B, K, L, F_t); got "
                f"{tuple(video_feats.shape)} and {tuple(text_feats.shape)}"
            )
        b, k, t, fv = video_feats.shape
        if k != cfg.num_levels or text_feats.shape[1] not in (1, cfg.num_levels):
            raise ValueError(
                f"model.num_levels={cfg.num_levels} but got {k} video / {text_feats.shape[1]} text levels"
            )
        if fv != cfg.video_dim or text_feats.shape[-1] != cfg.text_dim:
            raise ValueError(
                f"feature dims ({fv}, {text_feats.shape[-1]}) do not match model.video_dim="
                f"{cfg.video_dim}, model.text_dim={cfg.text_dim}"
            )
        if video_mask.shape != (b, t) or text_mask.shape != (b, text_feats.shape[2]):
            raise ValueError(
                f"masks must be (B, T)={(b, t)} and (B, L)={(b, text_feats.shape[2])}; got "
                f"{tuple(video_mask.shape)} and {tuple(text_mask.shape)}"
            )
        msg = "every sample needs at least one valid clip, left-aligned (video_mask[:, 0])"
        if sync_free(video_mask.device):
            torch._assert_async(video_mask[:, 0].all(), msg)  # checked on the device: no sync
        elif not bool(video_mask[:, 0].all()):
            raise ValueError(msg)

    def text_attention_mask(self, text_mask: Tensor) -> Tensor:
        """Tokens used by the CAs and pooling: ``text_mask`` minus the CLS token (if any).

        A query whose only valid token is the CLS keeps it.
        """
        if not self.cfg.text_cls:
            return text_mask
        mask = text_mask.clone()
        mask[:, 0] = False
        return torch.where(mask.any(dim=-1, keepdim=True), mask, text_mask)

    def forward(
        self, video_feats: Tensor, video_mask: Tensor, text_feats: Tensor, text_mask: Tensor
    ) -> dict[str, Any]:
        """video_feats ``(B, K, T, F_v)``, video_mask ``(B, T)`` bool (True = valid clip,
        left-aligned), text_feats ``(B, K, L, F_t)`` or ``(B, 1, L, F_t)`` (one text layer for
        every level), text_mask ``(B, L)`` bool."""
        self._check_inputs(video_feats, video_mask, text_feats, text_mask)
        cfg = self.cfg
        video_mask, text_mask = video_mask.bool(), text_mask.bool()
        b, k, t, _ = video_feats.shape
        video = project_valid(self.video_proj, video_feats, video_mask)  # Eq. 2: (B, K, T, F)
        text = project_valid(self.text_proj, text_feats, text_mask, levels=k)  # Eq. 2: (B,K,L,F)
        tmask = self.text_attention_mask(text_mask)
        text_pooled = self.text_pool(text, tmask.unsqueeze(1).expand(-1, k, -1))  # (B, K, F)
        pos = sinusoidal_position_embedding(
            t, cfg.hidden_dim, device=video.device, dtype=video.dtype
        )[None]
        betas = self.gates()

        dense = video.new_zeros(b, t, cfg.hidden_dim)  # D^0
        refs, latent = self.queries(b)  # R^0, H^0 (Eq. 1)
        levels: list[dict[str, Tensor]] = []
        enc_outputs: dict[str, Tensor] | None = None
        for level in range(k):
            j = 0 if cfg.shared_levels else level
            v_l, t_l = video[:, level], text[:, level]
            dense_out = self.dense_layers[j](dense, v_l, betas[level], t_l, tmask, video_mask, pos)
            dense = dense_out["post_ffn"]  # D^{l+1}
            cond = v_l if cfg.condition == "raw" else dense_out[cfg.condition]  # Table 6
            if level == 0 and self.query_init is not None:
                refs, init_latent, enc_outputs = self.query_init(cond, video_mask, cfg.num_queries)
                if init_latent is not None:
                    latent = init_latent
            latent = self.sparse_layers[j](
                latent, refs, self.query_pos(refs), t_l, tmask, cond, pos, video_mask
            )  # Eq. 5-6
            spans = refine_references(refs, self.reg_head(latent))
            levels.append({"pred_logits": self.cls_head(latent), "pred_spans": spans})
            refs = spans.detach()  # R^{l+1}; gradients stay within a level (DAB-DETR)

        final = levels[-1]
        saliency = saliency_scores(dense, text_pooled[:, -1]).masked_fill(
            ~video_mask, 0.0
        )  # Eq. 16
        out: dict[str, Any] = {
            "pred_logits": final["pred_logits"],
            "pred_spans": final["pred_spans"],
            "pred_actionness": self.actionness_head(dense, final["pred_spans"], video_mask),
            "saliency": saliency,
            "aux_outputs": levels[:-1],
            "video_levels": video,
            "text_pooled": text_pooled,
            "video_mask": video_mask,
        }
        if enc_outputs is not None:
            out["enc_outputs"] = enc_outputs
        return out


def _dense_layer(cfg: SDSTConfig) -> DenseStreamLayer:
    return DenseStreamLayer(
        cfg.hidden_dim, cfg.num_heads, cfg.ffn_ratio, cfg.dropout, cfg.drop_path
    )


def _sparse_layer(cfg: SDSTConfig) -> SparseStreamLayer:
    order = cfg.active_sparse_order
    video_attention = None
    if "rdsa" in order:
        core = build_video_attention(
            cfg.attention,
            cfg.hidden_dim,
            cfg.num_heads,
            num_points=cfg.num_points,
            query_dim=cfg.rdsa_query_dim,
            points=cfg.rdsa_points,
            use_cnn=cfg.rdsa_cnn,
            use_latent=cfg.rdsa_use_latent,
            dropout=cfg.dropout,
        )
        video_attention = VideoAttentionBlock(core, cfg.hidden_dim, cfg.drop_path)
    return SparseStreamLayer(
        cfg.hidden_dim,
        cfg.num_heads,
        order,
        video_attention,
        cfg.ffn_ratio,
        cfg.dropout,
        cfg.drop_path,
    )


def _projection(in_dim: int, cfg: SDSTConfig) -> MLP:
    """F_v / F_t of Eq. 2. The 0.5 dropout of Table A sits after the first layer's ReLU (on
    the F-dim hidden, as cheap as it gets); a 1-layer projection drops its input instead."""
    f = cfg.hidden_dim
    if cfg.proj_layers == 1:
        return MLP(in_dim, f, f, 1, input_dropout=cfg.proj_dropout)
    return MLP(in_dim, f, f, cfg.proj_layers, dropout=cfg.proj_dropout)


def project_valid(
    mlp: nn.Module,
    feats: Tensor,
    mask: Tensor,
    pack: bool | None = None,
    levels: int | None = None,
) -> Tensor:
    """Apply ``mlp`` to the valid rows only: ``(B, K, N, C_in), (B, N) -> (B, K, N, F)``.

    Padded clips / tokens come out as zeros. ``pack`` (default: unless :func:`sync_free`,
    i.e. on the CPU) gathers the valid rows first, which saves most of the cost of the wide
    text projection (queries are much shorter than the padded length); without it every row is
    projected and the padded ones are zeroed after (same outputs; on an accelerator the gather
    would need the number of valid rows on the host, a synchronisation that costs more than the
    padded rows).

    ``feats`` ``(B, 1, N, C_in)`` with ``levels=K`` is one input shared by K levels (e.g. a
    one-layer text feature): the first linear layer, the wide one, runs once, and what follows
    it (ReLU, dropout, further layers) runs per level, so each level still draws its own dropout
    mask, exactly as if the input had been repeated K times (tests pin it).
    """
    levels = levels or feats.shape[1]
    shared = feats.shape[1] == 1 and levels > 1
    if shared and not (fast_paths() and isinstance(mlp, MLP) and mlp.first_layer_shareable):
        feats, shared = feats.expand(-1, levels, -1, -1), False
    if pack is None:
        pack = not sync_free(feats.device)
    b, _, n, _ = feats.shape
    if not pack:
        keep = mask[:, None, :, None].to(feats.dtype)
        if shared:
            assert isinstance(mlp, MLP)
            first = mlp.layers[0](feats).expand(-1, levels, -1, -1)
            return mlp.after_first(first) * keep
        return mlp(feats) * keep
    rows = mask.unsqueeze(1).expand(b, levels, n)
    if shared:
        assert isinstance(mlp, MLP)
        first = mlp.layers[0](feats[:, 0][mask])  # (valid rows, hidden): once for all levels
        spread = first.new_zeros(b, n, first.shape[-1])
        spread[mask] = first
        projected = mlp.after_first(spread.unsqueeze(1).expand(-1, levels, -1, -1)[rows])
    elif bool(mask.all()):
        return mlp(feats)
    else:
        projected = mlp(feats[rows])
    out = projected.new_zeros(b, levels, n, projected.shape[-1])
    out[rows] = projected
    return out


def build_sdst(cfg: SDSTConfig) -> SDST:
    """Build the SDST described by ``cfg``."""
    f = cfg.hidden_dim
    n_layers = 1 if cfg.shared_levels else cfg.num_levels
    return SDST(
        cfg,
        video_proj=_projection(cfg.video_dim, cfg),
        text_proj=_projection(cfg.text_dim, cfg),
        gates=LevelGates(cfg.num_levels),
        dense_layers=nn.ModuleList(_dense_layer(cfg) for _ in range(n_layers)),
        sparse_layers=nn.ModuleList(_sparse_layer(cfg) for _ in range(n_layers)),
        queries=RecurrentQueries(cfg.num_queries, f),
        query_pos=ReferencePositionEmbedding(f),
        cls_head=ClassificationHead(f),
        reg_head=SpanRegressionHead(f),
        actionness_head=ActionnessHead(f, cfg.roi_size, cfg.roi_scale),
        text_pool=AdaptiveTextPooling(f),
        query_init=None if cfg.query_init == "learned" else QueryInitializer(f, cfg.query_init),
    )


# ---------------------------------------------------------------- named configurations
def _paper_config(text_dim: int, num_queries: int, overrides: dict[str, Any]) -> SDSTConfig:
    # 1024-d features come from the BERT-style InternVideo2 text tower (token 0 is a CLS);
    # the released 4096-d LLM-text features have no CLS token.
    overrides.setdefault("text_cls", text_dim != 4096)
    return replace(
        SDSTConfig(video_dim=768, text_dim=text_dim, num_queries=num_queries), **overrides
    )


def qvhighlights_config(text_dim: int = 4096, **overrides: Any) -> SDSTConfig:
    """QVHighlights (Table A): InternVideo2-1B video 768-d; text 4096-d (released
    InternVideo2 LLM-text features) or 1024-d (the BERT-large text tower), M = 30."""
    return _paper_config(text_dim, 30, overrides)


def charades_config(text_dim: int = 4096, **overrides: Any) -> SDSTConfig:
    """Charades-STA (Table A): same architecture, M = 30."""
    return _paper_config(text_dim, 30, overrides)


def tacos_config(text_dim: int = 4096, **overrides: Any) -> SDSTConfig:
    """TACoS (Table A): M = 5 queries."""
    return _paper_config(text_dim, 5, overrides)


def synthetic_config(video_dim: int = 32, text_dim: int = 24, **overrides: Any) -> SDSTConfig:
    """A tiny SDST for tests and the synthetic benchmark (all components, small widths)."""
    base = SDSTConfig(
        video_dim=video_dim,
        text_dim=text_dim,
        hidden_dim=32,
        num_queries=6,
        num_levels=2,
        num_heads=4,
        ffn_ratio=2,
        rdsa_query_dim=16,
        roi_size=4,
        proj_dropout=0.1,
        drop_path=0.1,
    )
    return replace(base, **overrides)


def sdst_qvhighlights(text_dim: int = 4096, **overrides: Any) -> SDST:
    return build_sdst(qvhighlights_config(text_dim, **overrides))


def sdst_charades(text_dim: int = 4096, **overrides: Any) -> SDST:
    return build_sdst(charades_config(text_dim, **overrides))


def sdst_tacos(text_dim: int = 4096, **overrides: Any) -> SDST:
    return build_sdst(tacos_config(text_dim, **overrides))


def sdst_synthetic(video_dim: int = 32, text_dim: int = 24, **overrides: Any) -> SDST:
    return build_sdst(synthetic_config(video_dim, text_dim, **overrides))


SDST_PRESETS = {
    "sdst_qvhighlights": qvhighlights_config,
    "sdst_charades": charades_config,
    "sdst_tacos": tacos_config,
    "sdst_synthetic": synthetic_config,
}
