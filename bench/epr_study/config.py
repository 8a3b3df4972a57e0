"""The study's settings (datasets, backbones, sets, seeds, thresholds), its progress log, the machine
description and the files every step writes."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import hubness_pr
from bench.common import cpu_name

ROOT = Path(__file__).resolve().parents[2]  # the repository

DATASETS = ("fashion", "digits")
BACKBONES = ("efficientnet_lite0", "vgg16_random")
# features without a network, to see whether a finding is one of the CNN features (extract --backbones):
# 2x2 average-pooled pixels of the SIDE x SIDE grey image (256-d, 0..1), and a seeded Gaussian random
# projection of its pixels (1024 -> 256, entries N(0, 1/256))
PIXEL_BACKBONES = ("pixels_pool2", "pixels_proj")
PROJECTION_SEED = 11
SIDE = 32                   # images are upscaled to SIDE x SIDE grey, then repeated to RGB
DATA_SEED = 2024            # real / held-out split and every set's composition and order
NOISE_SEED = 7              # pixel noise
BACKBONE_SEED = 0           # vgg16_random's weights
DROPPED = 3                 # classes left out by drop3
OVERREP_SHARE = 0.25        # share of the over-represented class in overrep
NOISE = (12.0, 40.0)        # sigma on 0..255 of noise_weak, noise_strong (--noise)
BLUR = (0.7, 1.5)           # PIL GaussianBlur radius of blur_weak, blur_strong on the SIDE x SIDE image (--blur)
SETS = ("matched", "drop3", "overrep", "noise_weak", "noise_strong", "blur_weak", "blur_strong", "memorised",
        "mix_matched_noise", "mix_matched_memorised")
TOY_SKIP = ("noise_weak", "blur_weak")
TOY = {"dataset": "digits", "max_n": 80, "backbones": ("efficientnet_lite0",), "sizes": (80,), "ks": (3,)}
LIMIT = 0.02                # |eP - P| and |eR - R| below this count as "tracks the exact value"
SIGNIFICANT = 0.02          # an exact difference between two sets at least this large is a real effect
_T0 = time.perf_counter()


def log(message: str) -> None:
    """Progress on stderr, with the seconds since start."""
    print(f"[epr_study {time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """np.save through a temporary file beside ``path``, then os.replace."""
    with hubness_pr.atomic_write(path, "wb") as handle:
        np.save(handle, array)


def atomic_save_figure(path: Path, fig) -> None:
    with hubness_pr.atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)


def feature_file(folder: Path, dataset: str, backbone: str, name: str) -> Path:
    return Path(folder) / f"{dataset}_{backbone}_{name}.npy"


def machine() -> dict:
    """The machine and versions, for the report."""
    import torch
    info = {"platform": platform.platform(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "numpy": np.__version__, "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    info["toolkit"] = hubness_pr.__version__
    try:
        import faiss
        info["faiss"] = faiss.__version__
    except ImportError:
        info["faiss"] = None
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        info["commit"] = head + (" (working tree modified)" if dirty else "") if head else None
    except (OSError, subprocess.SubprocessError):
        info["commit"] = None
    return info


def resolved_device(device: str) -> str:
    return str(hubness_pr.resolve_device(device))


def shown(path: Path) -> str:
    """A path as the report names it: relative to the repository where it lies inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def report_prefix(toy: bool) -> str:
    """Name of the report, its figures and the default JSON."""
    return "epr_study_toy" if toy else "epr_study"

