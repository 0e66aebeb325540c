"""The grounding config: ``task``, ``run_dir`` and one section per component.

``sidetune train sdst_qvhighlights data.train=... model.hidden_dim=128 train.epochs=5`` fills
this schema from the YAML file and the overrides (``sidetune.config.load_config``); unknown keys
are errors naming the key. The resolved config is saved as ``run_dir/config.yaml`` so
``predict``, ``--resume`` and :func:`sidetune.grounding.load_grounding_model` rebuild the run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

from sidetune.config import ConfigError
from sidetune.engine.config import TrainConfig
from sidetune.grounding.data import DataConfig
from sidetune.grounding.losses import LossConfig
from sidetune.grounding.model import SDSTConfig
from sidetune.grounding.postprocess import PostprocessConfig

# The checkpoint-selection metric of each dataset (higher is better): the issue's
# "best by MR-full-mAP (or R1@0.7 for Charades/TACoS)".
DEFAULT_BEST_METRIC: dict[str, str] = {
    "qvhighlights": "MR-full-mAP",
    "charades": "R1@0.7",
    "tacos": "R1@0.7",
}


@dataclass
class GroundingConfig:
    """Everything a grounding run needs.

    task: always ``grounding`` (the CLI dispatches on it).
    run_dir: checkpoints, logs, the resolved config and predictions go here.
    best_metric: key of the validation metrics that selects the ``best`` checkpoint;
        null -> ``MR-full-mAP`` (QVHighlights) or ``R1@0.7`` (Charades-STA, TACoS).
    """

    task: Literal["grounding"] = "grounding"
    run_dir: str = "runs/sdst"
    best_metric: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: SDSTConfig = field(default_factory=SDSTConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    post: PostprocessConfig = field(default_factory=PostprocessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.data.text_cls is not None:
            # Saved run configs carry this never-read key: load them, but say it does nothing.
            warnings.warn(
                f"data.text_cls={self.data.text_cls} is ignored (legacy key); model.text_cls="
                f"{self.model.text_cls} decides whether text token 0 is a CLS",
                FutureWarning,
                stacklevel=2,
            )
            self.data.text_cls = None
        # Table E rows: a loss term that is off leaves its head untrained, so it must not
        # enter the ranking (Eq. 23 falls back to the other head alone).
        off = set(self.loss.disabled)
        if "actionness" in off:
            self.post.use_actionness = False
        if "cls" in off:
            self.post.use_cls = False
        if not (self.post.use_cls or self.post.use_actionness):
            raise ConfigError(
                "loss.disabled switches off both the cls and the actionness term: no head is "
                "trained to rank the predicted moments (keep at least one of them)"
            )

    @property
    def resolved_best_metric(self) -> str:
        return self.best_metric or DEFAULT_BEST_METRIC[self.data.dataset]
