"""k-nearest-neighbour metrics for generative models: P&R, eP&R, density & coverage, realism, rarity,
hubness. Arrays in, frozen dataclasses out; see ``evaluate`` and docs/definitions.md.

Names are imported on first use (PEP 562), so ``import hubness`` and ``python -m hubness --help``
do not load torch before they need it.
"""
from __future__ import annotations

from features.lazy import lazy_attributes
from features.version import __version__

_EXPORTS = {
    "DEFAULT_MEMORY_BUDGET": "distances", "resolve_device": "distances",
    "NeighborGraph": "knn", "nearest_neighbors": "knn", "neighbors_of": "knn",
    "METRICS": "metrics", "DensityCoverage": "metrics", "EfficientPrecisionRecall": "metrics", "Evaluation": "metrics",
    "PrecisionRecall": "metrics", "RarityScores": "metrics", "RealismScores": "metrics", "check_options": "metrics",
    "density_coverage": "metrics", "efficient_precision_recall": "metrics", "evaluate": "metrics",
    "json_safe": "metrics", "real_knn_needs": "metrics", "precision_recall": "metrics", "rarity_scores": "metrics", "realism_scores": "metrics", "real_rarity_scores": "metrics",
    "HubnessStats": "stats", "hubness_stats": "stats",
    "HnswOptions": "ann", "KNN_METHODS": "ann",
}
_MODULES = ("ann", "kernels", "distances", "frame", "knn", "cross", "metrics", "stats", "summary", "distributed", "report",
            "gallery", "runlog", "command")

__all__ = sorted(_EXPORTS) + ["__version__", "kernels"]


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, _MODULES)
