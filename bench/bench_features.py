#!/usr/bin/env python3
"""Benchmark of feature extraction: images/s of decoding (+ resize) alone and of full extraction,
per backbone, on this machine. Decoding should not be the bottleneck.

Images: N real photos made from scikit-learn's two sample photos (random 256x256 crops, saved as
PNG and as JPEG). ``vgg16_random`` has the compute of ``vgg16`` (no ImageNet weights needed).

Usage (from the repository root):  python -m bench.bench_features [--n 256] [--batch_size 32] [--num_workers 2] [--backbones ...]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images

from hubness_pr.extraction.backbones import load_backbone
from hubness_pr.extraction.extract import extract_features
from hubness_pr.extraction.images import open_source


def make_images(folder: Path, n: int, fmt: str) -> None:
    photos = load_sample_images().images
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        photo = photos[i % 2]
        y, x = rng.integers(0, photo.shape[0] - 256), rng.integers(0, photo.shape[1] - 256)
        Image.fromarray(photo[y:y + 256, x:x + 256]).save(folder / f"{i:05d}.{fmt}", quality=95)


class Decoded:
    """Image i of the source, decoded and prepared for the network (what extraction's DataLoader
    workers do before the network sees a batch); the images here are all of one size."""

    def __init__(self, source, prepare):
        self.source, self.prepare = source, prepare

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        return self.prepare(self.source.read(i))


def decode_rate(source, prepare, batch_size, workers) -> float:
    from torch.utils.data import DataLoader
    loader = DataLoader(Decoded(source, prepare), batch_size=batch_size, num_workers=workers)
    t = time.perf_counter()
    count = sum(len(batch) for batch in loader)
    return count / (time.perf_counter() - t)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--num_workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--backbones", default="efficientnet_lite0,vgg16_random")
    args = p.parse_args()
    import torch
    print(f"{args.n} images 256x256, batch {args.batch_size}, {args.num_workers} workers, "
          f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), CPU")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("png", "jpg"):
            make_images(Path(tmp) / fmt, args.n, fmt)
        print(f"{'backbone':<20} {'format':<6} {'decode+resize img/s':>20} {'extraction img/s':>17}")
        for name in args.backbones.split(","):
            backbone = load_backbone(name)
            for fmt in ("png", "jpg"):
                source = open_source(Path(tmp) / fmt)
                decode = decode_rate(source, backbone.prepare, args.batch_size, args.num_workers)
                t = time.perf_counter()
                extract_features(source, backbone, batch_size=args.batch_size, num_workers=args.num_workers,
                                 device="cpu", progress=False)
                full = args.n / (time.perf_counter() - t)
                print(f"{name:<20} {fmt:<6} {decode:>20.1f} {full:>17.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
