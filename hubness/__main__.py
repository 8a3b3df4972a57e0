"""``python -m hubness REAL FAKE``: the metric command (improved_precision_recall_hubness.py)."""
from features.launch import launch

raise SystemExit(launch("hubness.command", "python -m hubness"))
