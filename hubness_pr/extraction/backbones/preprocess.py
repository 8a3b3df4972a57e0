"""Resizing and normalisation: part of a feature's definition, so each policy is spelled out here.

* :class:`PilResize` -- PIL bilinear resize of the uint8 image (PIL antialiases when shrinking),
  then [0, 1] scaling and mean/std normalisation: the original ``getFeature.py`` pipeline
  (``transforms.Resize([224, 224])`` on a PIL image, ``ToTensor``, ``Normalize``).
* :class:`Tf1Resize` (``tf1_bilinear``; ``nvidia`` before 0.2.0) -- torch-fidelity's VGG16 input
  pipeline: the uint8 image as float in [0, 255], TensorFlow 1.x bilinear resize
  (``align_corners=False``, no half-pixel offset, no antialiasing), normalised by 255 * mean /
  255 * std. It is not NVIDIA's TorchScript ``vgg16.pt`` (``--backbone vgg16_nvidia``), though
  torch-fidelity's tests find torchvision's ImageNet VGG16 behind this pipeline within 1e-4 of it.

* :class:`TorchBilinear` (``pytorch_fid``) -- pytorch-fid's ``InceptionV3(resize_input=True,
  normalize_input=True)``: the image scaled to [0, 1], ``F.interpolate(mode='bilinear',
  align_corners=False)`` (no antialiasing) to the input size, then mean/std (0.5 / 0.5 gives its
  ``2 * x - 1``).
* :class:`CleanResize` (``clean``) -- clean-fid's ``build_resizer('clean')``: each channel of the
  uint8 image resized as a float image (PIL mode 'F') with PIL's bicubic filter, clipped to
  [0, 255], not rounded; then normalised in [0, 255] units (by 255 * mean / 255 * std).
* :class:`PilBicubic` (``dgm_eval``) -- dgm-eval's DINOv2 input (torchvision ``Resize((224, 224),
  BICUBIC)`` on the PIL image, ``ToTensor``, ImageNet ``Normalize``), which is also EDM2's 'pil'
  resize mode: PIL bicubic resize of the uint8 image (antialiased, rounded to uint8).
* :class:`ClipResize` (``clip``) -- open_clip's / OpenAI CLIP's evaluation transform: bicubic resize
  of the short side to the input size (torchvision on the PIL image), centre crop, CLIP mean/std.
* :class:`CmmdResize` (``cmmd``) -- the CMMD reference's input: centre square crop, PIL bicubic resize
  to the input size (336 for its ViT-L/14-336), [0, 1], CLIP mean/std.

All are picklable callables, (H, W, 3) uint8 -> (3, size, size) float32 tensor. Each backbone picks
its default and may give its own mean/std (``make_preprocess(..., mean=, std=)``).
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


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's, as open_clip's OPENAI_DATASET_MEAN / _STD
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    return ((x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)).contiguous()


class PilResize:
    resample, resize = Image.BILINEAR, "PIL bilinear (antialiased)"

    def __init__(self, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)

    def describe(self) -> dict:
        return {"input_size": self.size, "resize": self.resize, "scale": "[0, 1]",
                "mean": list(self.mean), "std": list(self.std)}

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        pil = Image.fromarray(image)
        if pil.size != (self.size, self.size):
            pil = pil.resize((self.size, self.size), self.resample)
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
        x = torch.from_numpy(np.require(image, requirements=("C", "W"))).permute(2, 0, 1).float()
        if x.shape[1:] != (self.size, self.size):
            x = tf1_bilinear(x, self.size)
        mean = torch.tensor(self.mean).view(3, 1, 1) * 255
        std = torch.tensor(self.std).view(3, 1, 1) * 255
        return ((x - mean) / std).contiguous()


class PilBicubic(PilResize):
    """``dgm_eval``: PIL bicubic resize of the uint8 image (antialiased, rounded to uint8), [0, 1], mean/std."""
    resample, resize = Image.BICUBIC, "PIL bicubic (antialiased, uint8)"


class TorchBilinear:
    """``pytorch_fid``: [0, 1], torch bilinear resize (align_corners=False, no antialiasing, run even at
    the input size, where it is the identity), then mean/std."""

    def __init__(self, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)

    def describe(self) -> dict:
        return {"input_size": self.size, "resize": "torch bilinear, align_corners=False, no antialiasing",
                "scale": "[0, 1]", "mean": list(self.mean), "std": list(self.std)}

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.require(image, requirements=("C", "W"))).permute(2, 0, 1).float().div(255)[None]
        x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return _normalise(x[0], self.mean, self.std)


class CleanResize:
    """``clean``: clean-fid's resize (each channel as a PIL float image, bicubic, clipped to [0, 255],
    not rounded), normalised in [0, 255] units."""

    def __init__(self, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)

    def describe(self) -> dict:
        return {"input_size": self.size, "resize": "PIL bicubic of each channel as float (clean-fid 'clean')",
                "scale": "[0, 255]", "mean": [255 * m for m in self.mean], "std": [255 * s for s in self.std]}

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        channels = []
        for c in range(3):
            pil = Image.fromarray(image[:, :, c].astype(np.float32), mode="F")
            pil = pil.resize((self.size, self.size), resample=Image.BICUBIC)
            channels.append(np.asarray(pil).clip(0, 255))
        x = torch.from_numpy(np.stack(channels).astype(np.float32))
        return _normalise(x, [255 * m for m in self.mean], [255 * s for s in self.std])


class ClipResize:
    """``clip``: open_clip's evaluation transform: torchvision bicubic resize of the short side (on the
    PIL image: antialiased, rounded to uint8), centre crop, [0, 1], CLIP mean/std."""

    def __init__(self, size: int, mean=CLIP_MEAN, std=CLIP_STD):
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)

    def describe(self) -> dict:
        return {"input_size": self.size, "resize": "bicubic resize of the short side (PIL, antialiased), centre crop",
                "scale": "[0, 1]", "mean": list(self.mean), "std": list(self.std)}

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF
        pil = TF.resize(Image.fromarray(image), self.size, interpolation=InterpolationMode.BICUBIC)
        pil = TF.center_crop(pil, [self.size, self.size])
        x = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return _normalise(x, self.mean, self.std)


class CmmdResize:
    """``cmmd``: the CMMD reference's input (google-research ``cmmd/io_util.py``, ``_center_crop_and_resize``
    and ``embedding.py``): the largest centred square (left ``(w - l) // 2``, top ``(h - l) // 2``),
    PIL bicubic resize to the input size (antialiased, uint8), [0, 1], CLIP mean/std. (The reference
    then resizes with ``jax.image.resize(bicubic)`` to that same size: the identity, left out.)"""

    def __init__(self, size: int, mean=CLIP_MEAN, std=CLIP_STD):
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)

    def describe(self) -> dict:
        return {"input_size": self.size, "resize": "centre square crop, then PIL bicubic resize (antialiased)",
                "scale": "[0, 1]", "mean": list(self.mean), "std": list(self.std)}

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        pil = Image.fromarray(image)
        w, h = pil.size
        side = min(w, h)
        top, left = (h - side) // 2, (w - side) // 2
        pil = pil.crop((left, top, left + side, top + side)).resize((self.size, self.size), Image.BICUBIC)
        x = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return _normalise(x, self.mean, self.std)


PREPROCESSING = {"pil": PilResize, "tf1_bilinear": Tf1Resize, "pytorch_fid": TorchBilinear, "clean": CleanResize,
                 "dgm_eval": PilBicubic, "clip": ClipResize, "cmmd": CmmdResize}
_aliases_noted: set = set()


def make_preprocess(name: str | None, size: int, default: str = "pil", **kwargs):
    """(current name, the preprocessing callable) of ``--preprocess name`` (``default`` for None)."""
    current = preprocess_name(default if name is None else name)
    if name in PREPROCESS_ALIASES and name not in _aliases_noted:  # said once a process
        _aliases_noted.add(name)
        log.warning("--preprocess %s is the old name of %s (torch-fidelity's VGG16 input pipeline); "
                    "NVIDIA's own VGG16 features are --backbone vgg16_nvidia --weights vgg16.pt", name, current)
    return current, PREPROCESSING[current](size, **kwargs)
