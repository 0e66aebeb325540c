"""Feature store (public per-file layouts) and, later, the extraction pipeline."""

from sidetune.features.store import (
    FeatureError,
    FeatureStore,
    find_feature_file,
    load_feature_file,
    load_text_features,
    load_video_features,
    save_text_features,
    save_video_features,
)

__all__ = [
    "FeatureError",
    "FeatureStore",
    "find_feature_file",
    "load_feature_file",
    "load_text_features",
    "load_video_features",
    "save_text_features",
    "save_video_features",
]
