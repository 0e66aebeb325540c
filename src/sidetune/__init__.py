"""sidetune: memory-efficient side-tuning of frozen video foundation models.

Two systems live here: SDST (``sidetune.grounding``) for video temporal grounding and
TDS-CLIP (``sidetune.recognition``) for action recognition. Both train a small network on
intermediate features of a frozen backbone (``sidetune.backbones``).
"""

__version__ = "0.1.0"
