"""SDST video temporal grounding (moment retrieval + highlight detection).

Python entry points: ``Grounder.from_run(run_dir).ground(video, queries)`` (an mp4 and
sentences -> moments) and ``load_grounding_model(run_dir).predict(video_feats, query_feats)``
(features in). They are imported lazily so that light modules (annotations, metrics) do not
pull in the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sidetune.grounding.inference import (
        Grounder,
        GroundingPredictor,
        GroundingResult,
        Moment,
        load_grounding_model,
    )

__all__ = ["Grounder", "GroundingPredictor", "GroundingResult", "Moment", "load_grounding_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from sidetune.grounding import inference

        return getattr(inference, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
