#!/usr/bin/env python3
"""Precision & recall with hubness-aware sampling (eP&R) and every other k-NN metric of generated
features against real ones. Usage: python improved_precision_recall_hubness.py real.npz fake.npz [--json out.json]
(see --help and README.md)."""

if __name__ == "__main__":
    try:
        from hubness_pr.commands.launch import launch
    except KeyboardInterrupt:  # Ctrl-C before the launcher is even loaded
        import os
        os.write(2, b"improved_precision_recall_hubness.py: interrupted\n")
        raise SystemExit(130) from None
    raise SystemExit(launch("hubness_pr.commands.metrics", "improved_precision_recall_hubness.py"))
