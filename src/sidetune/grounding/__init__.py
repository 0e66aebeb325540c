"""SDST video temporal grounding (moment retrieval + highlight detection).

``load_grounding_model(run_dir).predict(video_feats, query_feats)`` is the Python entry point;
it is imported lazily so that light modules (annotations, metrics) do not pull in the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sidetune.grounding.recipe import GroundingPredictor, load_grounding_model

__all__ = ["GroundingPredictor", "load_grounding_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from sidetune.grounding import recipe

        return getattr(recipe, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
