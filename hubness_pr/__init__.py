"""hubness-pr: judging generative image models by k-nearest-neighbour geometry.

Metrics (eP&R, improved precision & recall, density & coverage, realism, rarity, hubness) of generated
features against real ones, feature extraction from images, and HyP² retrieval. Arrays in, frozen
dataclasses out: see ``evaluate`` and docs/definitions.md. Subpackages, each with one job:

* ``hubness_pr.engine``: the numerics (tiled k-NN and real x fake passes, the reduction table, the
  run context); no options, files or environment variables;
* ``hubness_pr.metrics``: one small module a metric, the registry, ``evaluate``;
* ``hubness_pr.extraction``: images and backbones to features;
* ``hubness_pr.io``: feature files, the real-set summary cache, safe output files;
* ``hubness_pr.reports``: what a run writes (lines, JSON, CSV, figures, gallery, log);
* ``hubness_pr.commands``: the command lines, the only place options and the environment are read;
* ``hubness_pr.hyp2``: the HyP² hashing loss for multi-label retrieval.

Names are imported on first use (PEP 562), so ``import hubness_pr`` and ``--help`` do not load torch.
"""
from __future__ import annotations

from .lazy import lazy_attributes
from .version import __version__

_EXPORTS = {
    "DEFAULT_MEMORY_BUDGET": "engine.distances", "resolve_device": "engine.distances",
    "RunContext": "engine.context",
    "NeighborGraph": "engine.knn", "nearest_neighbors": "engine.knn", "neighbors_of": "engine.knn",
    "HnswOptions": "engine.ann", "KNN_METHODS": "engine.ann",
    "METRICS": "metrics", "DEFAULT_METRICS": "metrics", "DensityCoverage": "metrics", "EfficientPrecisionRecall": "metrics",
    "Evaluation": "metrics", "PrecisionRecall": "metrics", "PrecisionRecallCover": "metrics",
    "ProbabilisticPrecisionRecall": "metrics", "ClippedDensityCoverage": "metrics",
    "Authenticity": "metrics", "DataCopying": "metrics", "NearestReals": "engine.nearest",
    "nearest_two": "engine.nearest",
    "RarityScores": "metrics", "RealismScores": "metrics", "check_options": "metrics",
    "density_coverage": "metrics", "efficient_precision_recall": "metrics", "evaluate": "metrics",
    "json_safe": "reports.results", "to_dict": "reports.results", "real_knn_needs": "metrics", "real_stats_needs": "metrics", "RealStats": "engine.real_stats", "precision_recall": "metrics",
    "rarity_scores": "metrics", "realism_scores": "metrics", "real_rarity_scores": "metrics",
    "HubnessStats": "metrics", "hubness_stats": "metrics",
    "FrechetDistance": "metrics", "KernelInceptionDistance": "metrics", "CMMD": "metrics",
    "evaluate_splits": "metrics", "Splits": "metrics", "expected_coverage": "metrics",
    "splits_block": "reports.results",
    "OutputFiles": "io.outputs", "atomic_write": "io.outputs", "check_output_path": "io.outputs",
    "FEATURE_KEYS": "io.store", "FeatureFile": "io.store", "load_features": "io.store",
    "random_subset": "io.store", "save_features": "io.store",
}
_MODULES = ("engine", "metrics", "extraction", "io", "reports", "commands", "hyp2")

__all__ = sorted(_EXPORTS) + ["__version__"]

__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, _MODULES)
