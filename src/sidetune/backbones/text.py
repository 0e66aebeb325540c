"""InternVideo2 stage-2 text tower: BERT-large in "text mode" (the first 19 of 24 layers).

The released stage-2 model keeps a 24-layer BERT-large (width 1024) whose layers 19-23 are
video-text fusion layers with cross attention; plain text encoding ("text mode") runs only
layers 0-18 (``fusion_layer = 19``). We build exactly those 19 layers as a Hugging Face
``BertModel`` (no pooler) and map the released keys onto it:

``text_encoder.bert.embeddings.*`` -> ``embeddings.*``;
``text_encoder.bert.encoder.layer.{i}.*`` (i < 19) -> ``encoder.layer.{i}.*``;
fusion layers (i >= 19), ``crossattention`` weights, the MLM head ``text_encoder.cls.*`` and the
``position_ids`` buffer are ignored; old-style ``LayerNorm.gamma/beta`` become ``weight/bias``.
The optional ``text_proj`` (1024 -> 512, top-level key) is loaded when present.

Layers: ``0`` = embeddings, ``1..19`` = outputs of BERT layers 0-18 (Hugging Face
``hidden_states`` indexing); default: the last 4 (16-19).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import BertConfig, BertModel

from sidetune.backbones.base import BackboneError, TextBackbone
from sidetune.backbones.checkpoint import (
    LoadReport,
    StateDict,
    load_checked,
    read_state_dict,
    strip_module_prefix,
)
from sidetune.backbones.tokenization import tokenize_bert

_PREFIXES = ("text_encoder.bert.", "text_encoder.", "bert.")
_IGNORED = ("*crossattention*", "embeddings.position_ids", "cls.*", "pooler.*")


@dataclass(frozen=True)
class BertTextConfig:
    vocab_size: int = 30522
    hidden_size: int = 1024
    num_heads: int = 16
    intermediate_size: int = 4096
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    fusion_layer: int = 19  # text mode runs layers [0, fusion_layer)
    layer_norm_eps: float = 1e-12
    max_length: int = 40  # InternVideo2 stage-2 max_txt_l
    proj_dim: int = 512  # text_proj output (stage-2 embed_dim)


def internvideo2_text_config(**kw: Any) -> BertTextConfig:
    """The stage-2 BERT-large text tower (1B and 6B releases share it)."""
    return replace(BertTextConfig(), **kw)


def internvideo2_text_tiny_config(**kw: Any) -> BertTextConfig:
    """Tiny random-weight variant for tests: 3 text layers of width 32."""
    base = BertTextConfig(
        vocab_size=64, hidden_size=32, num_heads=4, intermediate_size=64,
        max_position_embeddings=64, fusion_layer=3, proj_dim=16,
    )  # fmt: skip
    return replace(base, **kw)


def load_bert_tokenizer(path: str | os.PathLike[str], max_length: int = 40) -> Any:
    """A lower-casing WordPiece tokenizer from a local directory holding ``vocab.txt``.

    (A path to the ``vocab.txt`` file itself also works.) Nothing is downloaded.
    """
    from transformers import BertTokenizer

    p = Path(path)
    folder = p.parent if p.is_file() and p.name == "vocab.txt" else p
    if not (folder / "vocab.txt").is_file():
        raise BackboneError(f"{p}: no BERT vocabulary (expected a directory holding vocab.txt)")
    try:
        return BertTokenizer.from_pretrained(
            str(folder), local_files_only=True, do_lower_case=True, model_max_length=max_length
        )
    except Exception as exc:  # tokenizers raise many types for malformed vocab files
        raise BackboneError(
            f"{folder / 'vocab.txt'}: cannot build a BERT tokenizer ({exc})"
        ) from exc


def map_bert_keys(state: StateDict, fusion_layer: int) -> tuple[StateDict, list[str]]:
    """Released text-encoder keys -> Hugging Face ``BertModel`` keys of the text-mode layers.

    Returns ``(mapped, dropped)``; ``dropped`` lists fusion-layer keys (layer >= fusion_layer).
    """
    state = strip_module_prefix(state)
    sub: StateDict = {}
    for prefix in _PREFIXES:
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if sub:
            break
    if not sub:
        sub = dict(state)
    mapped: StateDict = {}
    dropped: list[str] = []
    for key, value in sub.items():
        m = re.match(r"encoder\.layer\.(\d+)\.", key)
        if m and int(m.group(1)) >= fusion_layer:
            dropped.append(key)
            continue
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
            "LayerNorm.beta", "LayerNorm.bias"
        )
        mapped[key] = value
    return mapped, dropped


class InternVideo2Text(TextBackbone):
    """Frozen BERT text tower (text mode) with the intermediates API.

    ``forward_intermediates(..., project=True)`` applies the frozen ``text_proj`` (1024 -> 512)
    to every token of every chosen layer (only when the checkpoint provided it).
    """

    def __init__(
        self,
        cfg: BertTextConfig,
        tokenizer: Any = None,
        name: str = "internvideo2-text",
        add_sep: bool = False,
        normalize_text: bool = False,
    ) -> None:
        super().__init__()
        self.add_sep = add_sep  # False: the official "[CLS] X"; True: Hugging Face "[CLS] X [SEP]"
        self.normalize_text = normalize_text  # the official pre_text caption normalisation
        self.cfg = cfg
        self.name = name
        bert_cfg = BertConfig(
            vocab_size=cfg.vocab_size,
            hidden_size=cfg.hidden_size,
            num_hidden_layers=cfg.fusion_layer,
            num_attention_heads=cfg.num_heads,
            intermediate_size=cfg.intermediate_size,
            max_position_embeddings=cfg.max_position_embeddings,
            type_vocab_size=cfg.type_vocab_size,
            layer_norm_eps=cfg.layer_norm_eps,
        )
        self.bert = BertModel(bert_cfg, add_pooling_layer=False)
        self.text_proj = nn.Linear(cfg.hidden_size, cfg.proj_dim)
        self.has_proj = False  # True once real text_proj weights are loaded
        self.depth = cfg.fusion_layer
        self.width = cfg.hidden_size
        self.max_length = cfg.max_length
        self.tokenizer = tokenizer
        self.tokenizer_hint = "pass a local BERT vocab directory, e.g. --tokenizer DIR"
        self.load_report: LoadReport | None = None

    def feature_dim(self, project: bool = False) -> int:
        return self.cfg.proj_dim if project else self.cfg.hidden_size

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """InternVideo2's format: ``[CLS] X`` padded to ``max_length`` (see ``tokenization``)."""
        if self.tokenizer is None:
            raise BackboneError(f"{self.name}: no tokenizer ({self.tokenizer_hint})")
        return tokenize_bert(
            self.tokenizer,
            texts,
            self.max_length,
            add_sep=self.add_sep,
            normalize=self.normalize_text,
        )

    def load(self, path: str, strict: bool = True) -> LoadReport:
        """Load the text-mode layers (and ``text_proj`` if present) from a released checkpoint."""
        raw = read_state_dict(path)
        mapped, dropped = map_bert_keys(raw, self.cfg.fusion_layer)
        proj = {
            k.removeprefix("module.")[len("text_proj.") :]: v
            for k, v in raw.items()
            if k.removeprefix("module.").startswith("text_proj.")
        }
        report = load_checked(self.bert, mapped, path, ignore=_IGNORED, strict=strict)
        report.ignored.extend(dropped)
        if proj:
            load_checked(self.text_proj, proj, path, strict=True)
            self.has_proj = True
        self.load_report = report
        return report

    @torch.no_grad()
    def forward_intermediates(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        layers: Sequence[int] | None = None,
        project: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> ``(hidden (K, B, L, F), mask (B, L) bool)`` for the chosen layers."""
        chosen = self.resolve_layers(layers)
        if project and not self.has_proj:
            raise BackboneError(
                f"{self.name}: project=True needs text_proj weights from the checkpoint"
            )
        out = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=True,
            return_dict=True,
        )
        hidden = torch.stack([out.hidden_states[i] for i in chosen])
        if project:
            hidden = self.text_proj(hidden)
        return hidden, attention_mask.bool()
