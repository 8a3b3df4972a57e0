#!/usr/bin/env python3
"""Demo on bundled data: scikit-learn's 1,797 real 8x8 digit images.

Writes feature files to demo_out/ (real = one half of the digits; three "generators": the other
half, a mode-collapsed copy holding digits 0-4 only, and a noised copy), then runs
improved_precision_recall_hubness.py on each pair, as a user would at the shell.

    python demo.py [--out demo_out]
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from cli.metrics_main import main as metrics_main
from features.store import save_features


def make_feature_files(out: Path) -> dict:
    digits = load_digits()
    x = digits.data.astype(np.float32) / 16.0  # (1797, 64) pixel intensities in [0, 1]
    y = digits.target
    order = np.random.default_rng(0).permutation(len(x))
    real_idx, held_idx = np.sort(order[:900]), np.sort(order[900:])
    rng = np.random.default_rng(1)
    sets = {
        "real": real_idx,
        "fake_heldout": held_idx,                         # a perfect generator: new samples, same law
        "fake_collapsed": held_idx[y[held_idx] < 5],      # mode collapse: digits 0-4 only
    }
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, idx in sets.items():
        paths[name] = save_features(out / f"{name}.npz", x[idx], paths=[f"digit_{i:04d}" for i in idx],
                                    meta={"backbone": "pixels", "source": "sklearn.datasets.load_digits"})
    noised = np.clip(x[held_idx] + rng.normal(0, 0.35, size=x[held_idx].shape), 0, 1).astype(np.float32)
    paths["fake_noised"] = save_features(out / "fake_noised.npz", noised,
                                         paths=[f"digit_{i:04d}+noise" for i in held_idx],
                                         meta={"backbone": "pixels", "noise_std": 0.35})
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out", help="folder for the feature files and reports")
    args = parser.parse_args(argv)
    out = Path(args.out)
    paths = make_feature_files(out)
    status = 0
    for name in ("fake_heldout", "fake_collapsed", "fake_noised"):
        print(f"\n== {name} vs real " + "=" * 40, flush=True)
        status |= metrics_main([str(paths["real"]), str(paths[name]), "--json", str(out / f"{name}.json"),
                                "--per_sample", str(out / f"{name}.csv"), "-q"])
    print(f"\nreports written to {out}/ (JSON, per-sample CSV)")
    return status


if __name__ == "__main__":
    sys.exit(main())
