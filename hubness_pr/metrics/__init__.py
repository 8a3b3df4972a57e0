"""The metrics: one small module a metric, the registry of their names, and ``evaluate``, which
plans the engine's passes from the metrics asked for. See docs/definitions.md.

Names are imported on first use (PEP 562).
"""
from __future__ import annotations

from ..lazy import lazy_attributes

_EXPORTS = {name: "evaluation" for name in (
    "METRICS", "DEFAULT_METRICS", "DensityCoverage", "EfficientPrecisionRecall", "Evaluation", "PrecisionRecall",
    "PrecisionRecallCover", "RarityScores", "RealismScores", "check_options", "density_coverage",
    "efficient_precision_recall", "evaluate", "json_safe", "real_knn_needs", "precision_recall", "rarity_scores",
    "realism_scores", "real_rarity_scores")}
_EXPORTS.update(HubnessStats="hubness", hubness_stats="hubness")
_MODULES = ("evaluation", "hubness")
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, _MODULES)
