#!/usr/bin/env python3
"""Images (folder, zip, array file, list file) -> feature file (.npz). Usage:
python getFeature.py IMAGES --fname_precalc out.npz [--backbone vgg16] (see --help and README.md)."""
import sys

from cli.features_main import main

if __name__ == "__main__":
    sys.exit(main())
