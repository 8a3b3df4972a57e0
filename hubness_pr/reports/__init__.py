"""What a run writes: the printed lines, JSON, per-sample CSV, figures, gallery sheets, the run log.

Submodules are imported on first use (PEP 562).
"""
from __future__ import annotations

from ..lazy import lazy_attributes

_MODULES = ("results", "gallery", "runlog",)
__getattr__, __dir__ = lazy_attributes(__name__, {}, _MODULES)
