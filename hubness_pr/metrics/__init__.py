"""The metrics: one small module a metric (pr, dc, epr, realism, rarity, hubness, prcover, pprecision (ppr),
clipped (cdc), fd, kid, cmmd, auth, ct, protocols (a peer tool's numbers)), the
registry of their declarations (:mod:`hubness_pr.metrics.registry`), and :func:`evaluate`, which plans
the engine's passes from the metrics asked for. See docs/definitions.md.

Names are imported on first use (PEP 562).
"""
from __future__ import annotations

from hubness_pr.lazy import lazy_attributes

_EXPORTS = {name: "evaluation" for name in (
    "METRICS", "DEFAULT_METRICS", "Evaluation", "Plan", "check_options", "density_coverage",
    "efficient_precision_recall", "evaluate", "real_knn_needs", "real_stats_needs", "precision_recall", "rarity_scores",
    "realism_scores", "real_rarity_scores")}
_EXPORTS.update(PrecisionRecall="pr", DensityCoverage="dc", EfficientPrecisionRecall="epr", RealismScores="realism",
                RarityScores="rarity", PrecisionRecallCover="prcover",
                ProbabilisticPrecisionRecall="pprecision", ClippedDensityCoverage="clipped", HubnessStats="hubness",
                SetsHubness="hubness", hubness_stats="hubness", Metric="registry", register="registry",
                REGISTRY="registry", FrechetDistance="fd", KernelInceptionDistance="kid", CMMD="cmmd",
                expected_coverage="expected", evaluate_splits="splits", split_indices="splits",
                Splits="splits", Authenticity="auth", DataCopying="ct", ProtocolResult="protocols",
                PRESETS="protocols")
_MODULES = ("evaluation", "registry", "pr", "dc", "epr", "realism", "rarity", "hubness", "prcover", "pprecision",
            "clipped", "fd", "kid", "cmmd", "expected", "splits", "auth", "ct", "protocols")
__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, _MODULES)
