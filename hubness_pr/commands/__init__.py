"""The command lines (metrics, features, retrieval) and what they share: the only place options and
environment variables are read.

Submodules are imported on first use (PEP 562).
"""
from __future__ import annotations

from ..lazy import lazy_attributes

_MODULES = ("cli", "launch", "console", "metrics", "features", "retrieval",)
__getattr__, __dir__ = lazy_attributes(__name__, {}, _MODULES)
