"""Images to feature files: decoding, backbones, the .npz store, safe output files, and what every
command of the toolkit shares (features/cli.py, features/launch.py). See docs/architecture.md.

Names are imported on first use (PEP 562): ``import features.launch`` loads the standard library only.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"OutputFiles": "outputs", "atomic_write": "outputs", "check_output_path": "outputs",
            "FEATURE_KEYS": "store", "FeatureFile": "store", "load_features": "store", "random_subset": "store",
            "save_features": "store"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'features' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_EXPORTS))
