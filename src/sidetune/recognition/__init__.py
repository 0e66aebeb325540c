"""TDS-CLIP: memory-efficient action recognition with a temporal-difference side network.

A frozen CLIP ViT (run under ``torch.no_grad()``, layer by layer) feeds a trainable side
network of TDS blocks (temporal conv + TD-Adapter, CLS-shifted attention, MLP) whose input is
the SME-Adapter's motion-enhanced stem. See :mod:`sidetune.recognition.model`.
"""

from sidetune.recognition.adapters import SMEAdapter, TDAdapter, sme_adapter, td_adapter
from sidetune.recognition.config import (
    RecognitionConfig,
    RecognitionDataConfig,
    RecognitionEvalConfig,
    TDSModelConfig,
)
from sidetune.recognition.inference import RecognitionModel, load_recognition_model
from sidetune.recognition.model import (
    TDSCLIP,
    build_clip_vision,
    build_tds_clip,
    tds_clip_b16,
    tds_clip_l14,
)
from sidetune.recognition.side_network import TDSBlock, build_tds_block, cls_token_shift

__all__ = [
    "TDSCLIP",
    "RecognitionConfig",
    "RecognitionDataConfig",
    "RecognitionEvalConfig",
    "RecognitionModel",
    "SMEAdapter",
    "TDAdapter",
    "TDSBlock",
    "TDSModelConfig",
    "build_clip_vision",
    "build_tds_block",
    "build_tds_clip",
    "cls_token_shift",
    "load_recognition_model",
    "sme_adapter",
    "td_adapter",
    "tds_clip_b16",
    "tds_clip_l14",
]
