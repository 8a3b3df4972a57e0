"""The console commands of an installed toolkit (pyproject.toml): thin as the scripts of a checkout."""
from features.launch import launch


def hubness_pr() -> None:
    """``hubness-pr``: the metric command (improved_precision_recall_hubness.py)."""
    raise SystemExit(launch("hubness.command", "hubness-pr"))


def hubness_features() -> None:
    """``hubness-features``: feature extraction (getFeature.py)."""
    raise SystemExit(launch("hubness.extract_command", "hubness-features"))
