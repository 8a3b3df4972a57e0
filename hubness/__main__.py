"""``python -m hubness REAL FAKE``: the metric command, as ``python -m hubness_pr`` (old name, one release)."""
from hubness_pr.commands.launch import launch

raise SystemExit(launch("hubness_pr.commands.metrics", "python -m hubness"))
