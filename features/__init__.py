"""Images to feature files: decoding, backbones, the .npz store, safe output files, and what every
command of the toolkit shares (features/cli.py, features/launch.py). See docs/architecture.md.

Names are imported on first use (PEP 562): ``import features.launch`` loads the standard library only.
"""
from __future__ import annotations

from .lazy import lazy_attributes

_EXPORTS = {"OutputFiles": "outputs", "atomic_write": "outputs", "check_output_path": "outputs",
            "FEATURE_KEYS": "store", "FeatureFile": "store", "load_features": "store", "random_subset": "store",
            "save_features": "store"}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
