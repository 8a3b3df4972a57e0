"""The console commands of an installed toolkit (pyproject.toml): thin as the scripts of a checkout."""
from hubness_pr.commands.launch import launch


def hubness_pr() -> None:
    """``hubness-pr``: the metric command (improved_precision_recall_hubness.py)."""
    raise SystemExit(launch("hubness_pr.commands.metrics", "hubness-pr"))


def hubness_features() -> None:
    """``hubness-features``: feature extraction (getFeature.py)."""
    raise SystemExit(launch("hubness_pr.commands.features", "hubness-features"))
