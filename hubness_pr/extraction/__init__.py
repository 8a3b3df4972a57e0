"""Images to features: image sources (folders, zips, arrays, lists), backbones, batched extraction.

Submodules are imported on first use (PEP 562).
"""
from __future__ import annotations

from ..lazy import lazy_attributes

_MODULES = ("extract", "images", "backbones",)
__getattr__, __dir__ = lazy_attributes(__name__, {}, _MODULES)
