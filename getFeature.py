#!/usr/bin/env python3
"""Images (folder, zip, array file, list file) -> feature file (.npz). Usage:
python getFeature.py IMAGES --fname_precalc out.npz [--backbone vgg16] (see --help and README.md)."""
import sys

from cli.blas import prefer_avx512_blas

prefer_avx512_blas()  # before numpy loads OpenBLAS
from cli.features_main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
