"""Resizing and normalisation: part of a feature's definition, so each policy is spelled out here.

* :class:`PilResize` -- PIL bilinear resize of the uint8 image (PIL antialiases when shrinking),
  then [0, 1] scaling and mean/std normalisation: the original ``getFeature.py`` pipeline
  (``transforms.Resize([224, 224])`` on a PIL image, ``ToTensor``, ``Normalize``).
* :class:`Tf1Resize` (``tf1_bilinear``; ``nvidia`` before 0.2.0) -- torch-fidelity's VGG16 input
  pipeline: the uint8 image as float in [0, 255], TensorFlow 1.x bilinear resize
  (``align_corners=False``, no half-pixel offset, no antialiasing), normalised by 255 * mean /
  255 * std. It is not NVIDIA's TorchScript ``vgg16.pt`` (``--backbone vgg16_nvidia``), though
  torch-fidelity's tests find torchvision's ImageNet VGG16 behind this pipeline within 1e-4 of it.

Both are picklable callables, (H, W, 3) uint8 -> (3, size, size) float32 tensor.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image

from hubness_pr.extraction.backbones import PREPROCESS_ALIASES, preprocess_name

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PilResize:
    def __init__(self, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)

    def describe(self) -> dict:
        return {"input_size": self.size, "resize": "PIL bilinear (antialiased)", "scale": "[0, 1]",
                "mean": list(self.mean), "std": list(self.std)}

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        pil = Image.fromarray(image)
        if pil.size != (self.size, self.size):
            pil = pil.resize((self.size, self.size), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return ((x - mean) / std).contiguous()


def tf1_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """TensorFlow 1.x ``resize_bilinear(align_corners=False)`` of (C, H, W) float: source coordinate
    ``dst * in / out`` (no half-pixel offset), lerp between floor and floor + 1 (clamped)."""
    _, h, w = x.shape

    def axis(n_in):
        pos = torch.arange(size, dtype=torch.float32) * (n_in / size)
        lo = pos.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        return lo, hi, pos - lo.float()

    ylo, yhi, dy = axis(h)
    xlo, xhi, dx = axis(w)
    top = x[:, ylo][:, :, xlo] + (x[:, ylo][:, :, xhi] - x[:, ylo][:, :, xlo]) * dx
    bottom = x[:, yhi][:, :, xlo] + (x[:, yhi][:, :, xhi] - x[:, yhi][:, :, xlo]) * dx
    return top + (bottom - top) * dy[:, None]


class Tf1Resize:
    def __init__(self, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)

    def describe(self) -> dict:
        return {"input_size": self.size, "resize": "TF1 bilinear, align_corners=False, no antialiasing",
                "scale": "[0, 255]", "mean": [255 * m for m in self.mean], "std": [255 * s for s in self.std]}

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
        if x.shape[1:] != (self.size, self.size):
            x = tf1_bilinear(x, self.size)
        mean = torch.tensor(self.mean).view(3, 1, 1) * 255
        std = torch.tensor(self.std).view(3, 1, 1) * 255
        return ((x - mean) / std).contiguous()


PREPROCESSING = {"pil": PilResize, "tf1_bilinear": Tf1Resize}
_aliases_noted: set = set()


def make_preprocess(name: str | None, size: int, default: str = "pil", **kwargs):
    """(current name, the preprocessing callable) of ``--preprocess name`` (``default`` for None)."""
    current = preprocess_name(default if name is None else name)
    if name in PREPROCESS_ALIASES and name not in _aliases_noted:  # said once a process
        _aliases_noted.add(name)
        log.warning("--preprocess %s is the old name of %s (torch-fidelity's VGG16 input pipeline); "
                    "NVIDIA's own VGG16 features are --backbone vgg16_nvidia --weights vgg16.pt", name, current)
    return current, PREPROCESSING[current](size, **kwargs)
