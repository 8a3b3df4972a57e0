"""``python -m hubness_pr REAL FAKE``: the metric command (improved_precision_recall_hubness.py)."""
from hubness_pr.commands.launch import launch

raise SystemExit(launch("hubness_pr.commands.metrics", "python -m hubness_pr"))
