"""Benchmarks and studies of the toolkit. Each is a module run from the repository root, e.g.
``python -m bench.bench_metrics --n 5000`` or ``python -m bench.epr_study run ...``. Results are
written under bench/results (and docs/ for the eP&R study).
"""
