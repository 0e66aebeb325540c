"""Recognition config schema: ``task``, ``run_dir``, ``data.*``, ``model.*``, ``train.*``, ``eval.*``.

Filled from YAML + ``key=value`` overrides by :func:`sidetune.config.load_config`; unknown keys
are errors that name the key. Defaults are the TDS-CLIP ViT-B/16 recipe (8 frames, side width
320, n = 5 local frames, TD-Adapter on every layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sidetune.engine.config import TrainConfig

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class TDSModelConfig:
    """``model.*``: frozen CLIP + TDS side network + head.

    ``backbone`` names a CLIP vision tower preset (``clip-vit-b16``, ``clip-vit-l14``) or
    ``custom`` (then ``clip_config`` gives every ``CLIPVisionConfig`` field, e.g. a tiny random
    CLIP for tests and the synthetic benchmark). ``clip_checkpoint`` is a local directory in the
    ``transformers`` layout (``CLIPModel`` or ``CLIPVisionModel``) or an OpenAI CLIP ``.pt`` file
    (e.g. ``ViT-B-16.pt``, only its vision tower is read); ``null`` keeps random weights,
    drawn from ``random_backbone_seed`` so that the frozen random CLIP is a fixed function of the
    config (checkpoints hold only trainable weights, and a reloaded run must see the same CLIP).
    """

    backbone: str = "clip-vit-b16"
    clip_checkpoint: str | None = None
    clip_config: dict[str, Any] = field(default_factory=dict)  # overrides of the preset's fields
    random_backbone_seed: int = 0
    num_classes: int = 174
    side_dim: int = 320  # D: 320 for B/16, 512 for L/14 (Table 3f)
    side_heads: int = 0  # 0: D // 64
    mlp_ratio: float = 4.0
    fuse_weight: float = 0.5  # side <- (1 - w) * side + w * proj(CLIP layer i)
    # TD-Adapter (Eq. 4, Tables 3d/3e/4)
    td_adapter: bool = True
    td_reference: Literal["pool", "conv", "diff"] = "pool"
    td_kernel: int = 3
    td_reduction: int = 16
    td_layers: str = "all"  # all | first_half | second_half | none | "0,1,5" | "0-5"
    # SME-Adapter (Eq. 2-3, Tables 3b/3c); 1 local frame disables it
    num_local_frames: int = 5
    sme_rgb_weight: float = 1.0  # beta of Eq. 3 (centre-frame RGB stem)
    sme_diff_weight: float = 0.5  # alpha of Eq. 3 (temporal-difference stem)
    stem_temporal_kernel: int = 3
    # head / regularisation
    dropout: float = 0.0
    drop_path: float = 0.0
    # memory: recompute each side block in backward (torch.utils.checkpoint)
    grad_checkpointing: bool = False
    # memory: keep norm / GELU / gate outputs out of the backward's saved tensors and rebuild
    # them elementwise when backward needs them (matmuls and attention: see the two below)
    lean_saving: bool = True
    # with lean_saving: the side attention keeps only its input tokens too; backward rebuilds
    # the LayerNorm, q / k / v and the attention (one qkv matmul and one attention more)
    lean_attention: bool = True
    # with lean_saving: the side MLP keeps only its input; backward rebuilds the norm, fc1 and
    # GELU outputs (one fc1 matmul more) instead of keeping the r D-wide hidden layer
    lean_mlp: bool = True

    def __post_init__(self) -> None:
        if self.num_local_frames < 1 or self.num_local_frames % 2 == 0:
            raise ValueError(
                f"model.num_local_frames must be odd and >= 1, got {self.num_local_frames}"
            )
        if self.td_kernel < 1 or self.td_kernel % 2 == 0:
            raise ValueError(f"model.td_kernel must be odd and >= 1, got {self.td_kernel}")
        if self.side_dim < 1 or self.num_classes < 1:
            raise ValueError("model.side_dim and model.num_classes must be >= 1")
        heads = self.side_heads or max(1, self.side_dim // 64)
        if self.side_dim % heads:
            raise ValueError(f"model.side_dim {self.side_dim} is not divisible by {heads} heads")
        if not 0.0 <= self.fuse_weight <= 1.0:
            raise ValueError(f"model.fuse_weight must be in [0, 1], got {self.fuse_weight}")


@dataclass
class RecognitionDataConfig:
    """``data.*``: video lists, segment sampling and augmentation.

    List rows are ``path num_frames label`` (frame folders, SSv1 style) or ``path label``
    (video files, SSv2 / K400); ``format: auto`` decides from the first row. Paths are relative
    to ``root`` (or to the list's directory when ``root`` is empty). ``labels`` is a CSV
    ``id,name``; names drive the horizontal-flip label swap (``flip_swap: auto``).
    """

    dataset: str = "ssv2"  # ssv1 | ssv2 | k400 | synthetic | other (informative; used for defaults)
    root: str = ""
    train: str | None = None
    val: str | None = None
    test: str | None = None
    labels: str | None = None
    format: Literal["auto", "video", "frames"] = "auto"
    frame_template: str = "{:05d}.jpg"
    frame_index_base: int = 1  # file number of the first frame
    num_segments: int = 8  # T
    input_size: int = 224
    # train augmentation
    min_area: float = 0.08
    max_area: float = 1.0
    min_aspect: float = 3.0 / 4.0
    max_aspect: float = 4.0 / 3.0
    flip: bool = True
    # auto: swap classes whose names differ only by left <-> right; none: flip keeps labels;
    # pairs: use flip_pairs (explicit id pairs)
    flip_swap: Literal["auto", "none", "pairs"] = "auto"
    flip_pairs: list[list[int]] = field(default_factory=list)
    grayscale_prob: float = 0.0
    # Training sampling + augmentation: ``tsn`` (ours: random resized crop -> flip ->
    # RandAugment-style ops -> grayscale) or the authors' ``ssv2`` / ``k400`` pipelines
    # (``sth.py`` / ``kinetics.py`` frame sampling, RandAugment ``rand_augment_policy`` on the
    # decoded frames, bicubic ``scale``, their random sized crop, flip, grayscale).
    pipeline: Literal["tsn", "ssv2", "k400"] = "tsn"
    scale: list[int] = field(default_factory=list)  # [] = [256, 320] (ssv2) / [256] (k400)
    rand_augment_policy: str = "rand-m7-n4-mstd0.5-inc1"
    num_sample: int = 1  # repeated augmentation: augmented copies of each sampled clip
    rand_augment: bool = True
    rand_augment_ops: int = 2
    rand_augment_magnitude: int = 9  # 0..10
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    # Unreadable videos (found by opening every listed video before epoch 1, or failing to
    # decode later): false stops with the list; true skips and counts them.
    skip_unreadable: bool = False

    def __post_init__(self) -> None:
        if self.num_sample < 1:
            raise ValueError(f"data.num_sample must be >= 1, got {self.num_sample}")
        if len(self.scale) not in (0, 1, 2):
            raise ValueError(
                f"data.scale must be [], [short_side] or [height, width], got {self.scale}"
            )

    def resolved_scale(self) -> list[int]:
        """``GroupScale`` of the authors' training pipeline."""
        if self.scale:
            return list(self.scale)
        return (
            [256, 320]
            if self.pipeline == "ssv2"
            else [256 if self.input_size == 224 else self.input_size]
        )


@dataclass
class RecognitionEvalConfig:
    """``eval.*``: test views. Validation during training uses the same views.

    ``protocol`` chooses the frame indices, windows, resizing and crops:

    * ``ssv2`` -- the authors' Something-Something test (``datasets/sth.py``, ``test_vision.py``):
      frames ``round(i s) + int(s (c + 1) / (C + 1))`` with ``s = (F - 1) / T``, windows clamped
      at the video start, bicubic resize to ``scale`` = 256x320 (aspect not kept), centre crop
      or 3 crops at x in {0, 48, 96}, y = 16;
    * ``k400`` -- their Kinetics test (``datasets/kinetics.py``): frames ``int(start + i F / T)``,
      windows wrapping to the video end before its first frame (decord's negative indexing),
      shorter side 256 (bicubic), centre crop or 3 crops along the long side;
    * ``tsn`` -- our earlier views: segment fractions ``(c + 1) / (C + 1)``, bilinear, shorter
      side ``resize``.

    ``amp``: autocast of the test (``none``: fp32, as the authors' test script).
    """

    protocol: Literal["tsn", "ssv2", "k400"] = "tsn"
    num_crops: int = 1  # 1 centre | 3
    num_clips: int = 1  # temporal clips
    scale: list[int] = field(default_factory=list)  # [] = protocol's: [256, 320] ssv2, [256] k400
    resize: int = 0  # tsn: shorter side before cropping; 0: input_size * 256 // 224 for 1 crop, input_size for 3
    amp: Literal["none", "bf16", "fp16"] = "none"
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        if self.num_crops not in (1, 3):
            raise ValueError(f"eval.num_crops must be 1 or 3, got {self.num_crops}")
        if self.num_clips < 1:
            raise ValueError(f"eval.num_clips must be >= 1, got {self.num_clips}")
        if len(self.scale) not in (0, 1, 2):
            raise ValueError(
                f"eval.scale must be [] , [short_side] or [height, width], got {self.scale}"
            )

    def resolved_scale(self, input_size: int) -> list[int]:
        """The resize target of the official protocols (``test_vision.py``'s ``scale_size``)."""
        if self.scale:
            return list(self.scale)
        if self.protocol == "ssv2":
            return [256, 320]
        return [256 if input_size == 224 else input_size]


def _default_train() -> TrainConfig:
    # TDS-CLIP B/16 recipe: AdamW lr 1e-3, wd 0.15, cosine with warm-up, label smoothing 0.1.
    return TrainConfig(
        epochs=30,
        batch_size=16,
        lr=1e-3,
        weight_decay=0.15,
        schedule="cosine",
        warmup_iters=1000,
        clip_grad_norm=0.0,
    )


@dataclass
class RecognitionConfig:
    task: str = "recognition"
    run_dir: str = "runs/tds_clip"
    data: RecognitionDataConfig = field(default_factory=RecognitionDataConfig)
    model: TDSModelConfig = field(default_factory=TDSModelConfig)
    train: TrainConfig = field(default_factory=_default_train)
    eval: RecognitionEvalConfig = field(default_factory=RecognitionEvalConfig)

    def __post_init__(self) -> None:
        if self.task != "recognition":
            raise ValueError(f"task must be 'recognition', got {self.task!r}")
