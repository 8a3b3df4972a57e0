"""Files: feature files (.npz/.npy and sidecars), the real-set summary cache, provenance, safe output files.

Submodules are imported on first use (PEP 562).
"""
from __future__ import annotations

from ..lazy import lazy_attributes

_MODULES = ("store", "outputs", "provenance", "summary",)
__getattr__, __dir__ = lazy_attributes(__name__, {}, _MODULES)
