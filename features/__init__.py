"""Images to feature files: decoding, backbones, the .npz store and safe output files (DESIGN.md sections 5 and 6)."""
from .outputs import OutputFiles, atomic_write, check_output_path
from .store import FEATURE_KEYS, FeatureFile, load_features, random_subset, save_features

__all__ = ["FEATURE_KEYS", "FeatureFile", "OutputFiles", "atomic_write", "check_output_path", "load_features",
           "random_subset", "save_features"]
