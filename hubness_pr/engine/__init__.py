"""The numerics: tiled k-NN passes within a set, the real x fake pass and its reduction table, the fused
CPU kernels, the run context. No option parsing, files or environment variables here.

Submodules are imported on first use (PEP 562).
"""
from __future__ import annotations

from ..lazy import lazy_attributes

_MODULES = ("context", "reductions", "cross", "kernels", "kernels_jit", "knn", "distances", "frame", "distributed", "mapped", "ann", "inputs", "devices", "hard_cases",)
__getattr__, __dir__ = lazy_attributes(__name__, {}, _MODULES)
