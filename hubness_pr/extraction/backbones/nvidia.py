"""NVIDIA's TorchScript VGG16 (``vgg16.pt``): the features behind the precision & recall numbers of
StyleGAN2-ADA, StyleGAN3 and the code that reuses their ``metrics/``.

StyleGAN2-ADA's ``metrics/metric_utils.py`` loads it with ``torch.jit.load`` and calls it as
``detector(images, return_features=True)`` on uint8 NCHW batches in [0, 255], grey images repeated
to 3 channels, and gets (N, 4096) float features; the module resizes to 224 x 224 itself. This
backbone does the same: ``prepare`` hands each decoded image over as it is (uint8, its own size;
the decoder has already made grey images RGB by repeating the channel) and ``network`` calls the
module. The file is never downloaded: pass it with ``--weights vgg16.pt`` (its SHA-256 goes into
``meta``).

Images of different sizes: StyleGAN datasets have one size (its dataset tool makes them so), and
the original's DataLoader could not even batch mixed sizes. The module resizes every image on its
own, so an image's features do not depend on its batch; a batch of mixed sizes is run in runs of
one size (hubness_pr/extraction/extract.py), which gives each image the features the module gives it alone.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from hubness_pr.errors import InputError
from hubness_pr.extraction.backbones import register_backbone
from hubness_pr.extraction.backbones.base import Backbone, file_digest

URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt"
DIM = 4096
WHAT = f"NVIDIA's TorchScript vgg16.pt ({URL})"


class DetectorFeatures(torch.nn.Module):
    """``detector(x, return_features=True)`` as a plain module: uint8 (B, 3, H, W) -> (B, 4096) float32."""

    def __init__(self, detector: torch.nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, x):
        return self.detector(x, return_features=True).float()


class Uint8Image:
    """(H, W, 3) uint8 -> (3, H, W) uint8 tensor, untouched: the detector resizes and normalises."""

    def describe(self) -> dict:
        return {"input": "uint8 NCHW in [0, 255] at the image's own size, grey repeated to RGB",
                "resize": "inside the TorchScript module (224 x 224)"}

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(image.transpose(2, 0, 1).copy())  # a copy: the decoder's array may be read-only


def load_detector(path) -> torch.nn.Module:
    """The TorchScript module at ``path``, checked to be called as NVIDIA's is: ``module(uint8 NCHW
    images, return_features=True)`` -> (N, 4096) floats. Any problem is a one-line ValueError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(option="--weights", file=path, message="no such file")
    try:
        with warnings.catch_warnings():  # torch >= 2.9 calls torch.jit.load deprecated: not the user's concern
            warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated", category=FutureWarning)
            detector = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError and others for foreign or damaged files
        raise InputError(option="--weights", file=path,
                         message=f"not a TorchScript module ({_first_line(exc)}); vgg16_nvidia takes "
                         f"{WHAT}; a torchvision state dict goes with --backbone vgg16") from None
    schema = getattr(getattr(detector, "forward", None), "schema", None)  # None: no compiled forward
    arguments = [a.name for a in schema.arguments] if schema is not None else []
    if "return_features" not in arguments:
        raise InputError(option="--weights", file=path,
                         message="a TorchScript module without a return_features argument "
                         f"(forward takes {', '.join(arguments[1:]) or 'nothing'}), not {WHAT}")
    probe = torch.zeros((1, 3, 32, 32), dtype=torch.uint8)
    try:
        with torch.inference_mode():
            out = detector.eval()(probe, return_features=True)
    except Exception as exc:  # a module of another signature fails inside TorchScript
        raise InputError(option="--weights", file=path, message="module(uint8 images, return_features=True) fails "
                         f"({_first_line(exc)}): not {WHAT}") from None
    if not isinstance(out, torch.Tensor) or not out.is_floating_point() or tuple(out.shape) != (1, DIM):
        got = (f"{out.dtype} {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__)
        raise InputError(option="--weights", file=path,
                         message=f"module(images, return_features=True) gives {got}, not (N, {DIM}) float "
                         f"features: not {WHAT} (inception-2015-12-05.pt, the FID detector, gives 2048)")
    return detector


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:160]


@register_backbone("vgg16_nvidia")
def vgg16_nvidia(weights=None, preprocess=None, seed=0, allow_download=False) -> Backbone:
    if preprocess is not None:
        raise InputError(option="--preprocess", value=preprocess,
                         message="vgg16_nvidia resizes and normalises inside NVIDIA's module; "
                         "leave --preprocess out")
    if weights is None:
        raise InputError(f"vgg16_nvidia needs --weights vgg16.pt, {WHAT}; it is never downloaded")
    detector = load_detector(weights)
    prepare = Uint8Image()
    meta = {"backbone": "vgg16_nvidia", "layer": "module(images, return_features=True)", "weights": "file",
            "weights_file": os.path.basename(str(weights)), "weights_sha256": file_digest(weights),
            "preprocess": "inside the TorchScript module", **prepare.describe()}
    return Backbone(name="vgg16_nvidia", dim=DIM, network=DetectorFeatures(detector), prepare=prepare, meta=meta,
                    supports_half=False)
