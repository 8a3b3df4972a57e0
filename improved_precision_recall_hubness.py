#!/usr/bin/env python3
"""Precision & recall with hubness-aware sampling (eP&R) and every other k-NN metric of generated
features against real ones. Usage: python improved_precision_recall_hubness.py real.npz fake.npz [--json out.json]
(see --help and README.md)."""
import sys

from cli.metrics_main import main

if __name__ == "__main__":
    sys.exit(main())
