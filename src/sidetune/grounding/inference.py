"""How a trained grounding run is used, in one place.

- a run on disk -> config + model: :mod:`sidetune.grounding.runs` (``load_run``,
  ``resolve_checkpoint``);
- features -> prediction rows, for one pair or a whole split, windows for long videos:
  :mod:`sidetune.grounding.predictor` (``GroundingPredictor``, ``load_grounding_model``,
  ``predict``) and :mod:`sidetune.grounding.windows`;
- an mp4 and sentences -> moments and saliency: :mod:`sidetune.grounding.grounder`
  (``Grounder``, ``GroundingResult``, ``Moment``).

>>> from sidetune.grounding.inference import Grounder
>>> g = Grounder.from_run("demo_out/run")                                   # doctest: +SKIP
>>> [r] = g.ground("demo_out/rendered/videos/v0000.mp4", "the red circle moves left")  # doctest: +SKIP
>>> r.moments[0]            # Moment(start=..., end=..., score=...), best first   # doctest: +SKIP
"""

from __future__ import annotations

from sidetune.grounding.grounder import (
    ExtractorSettings,
    Grounder,
    GroundError,
    GroundingResult,
    Moment,
    Progress,
)
from sidetune.grounding.predictor import (
    GroundingPredictor,
    load_grounding_model,
    predict,
    predict_long,
    predict_rows,
    window_settings,
)
from sidetune.grounding.runs import load_run, resolve_checkpoint, run_extract_meta
from sidetune.grounding.windows import window_starts

__all__ = [
    "ExtractorSettings",
    "GroundError",
    "Grounder",
    "GroundingPredictor",
    "GroundingResult",
    "Moment",
    "Progress",
    "load_grounding_model",
    "load_run",
    "predict",
    "predict_long",
    "predict_rows",
    "resolve_checkpoint",
    "run_extract_meta",
    "window_settings",
    "window_starts",
]
