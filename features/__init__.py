"""Images to feature files: decoding, backbones and the .npz store (DESIGN.md sections 5 and 6)."""
from .store import (FEATURE_KEYS, FeatureFile, atomic_write, check_output_path, load_features, random_subset,
                    save_features)

__all__ = ["FEATURE_KEYS", "FeatureFile", "atomic_write", "check_output_path", "load_features",
           "random_subset", "save_features"]
