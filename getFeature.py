#!/usr/bin/env python3
"""Images (folder, zip, array file, list file) -> feature file (.npz). Usage:
python getFeature.py IMAGES --fname_precalc out.npz [--backbone vgg16] (see --help and README.md)."""

if __name__ == "__main__":
    try:
        from hubness_pr.commands.launch import launch
    except KeyboardInterrupt:  # Ctrl-C before the launcher is even loaded
        import os
        os.write(2, b"getFeature.py: interrupted\n")
        raise SystemExit(130) from None
    raise SystemExit(launch("hubness_pr.commands.features", "getFeature.py"))
