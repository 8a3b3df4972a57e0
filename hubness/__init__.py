"""k-nearest-neighbour metrics for generative models: P&R, eP&R, density & coverage, realism, rarity,
hubness. Arrays in, frozen dataclasses out; see ``evaluate`` and DESIGN.md."""
__version__ = "0.1.0"

from . import kernels
from .distances import DEFAULT_MEMORY_BUDGET, resolve_device
from .knn import NeighborGraph, nearest_neighbors
from .metrics import (METRICS, DensityCoverage, EfficientPrecisionRecall, Evaluation, PrecisionRecall,
                      RarityScores, RealismScores, check_options, density_coverage, efficient_precision_recall, evaluate,
                      json_safe, precision_recall, rarity_scores, realism_scores)
from .stats import HubnessStats, hubness_stats

__all__ = [
    "DEFAULT_MEMORY_BUDGET", "METRICS", "DensityCoverage", "EfficientPrecisionRecall", "Evaluation",
    "HubnessStats", "NeighborGraph", "PrecisionRecall", "RarityScores", "RealismScores",
    "check_options", "density_coverage", "efficient_precision_recall", "evaluate", "hubness_stats", "json_safe", "kernels",
    "nearest_neighbors", "precision_recall", "rarity_scores", "realism_scores", "resolve_device",
]
