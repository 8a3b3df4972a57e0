"""Feature extractors: a small registry; each backbone owns its preprocessing.

A :class:`Backbone` turns one decoded image ((H, W, 3) uint8 RGB) into a network input with
``prepare`` (run in the DataLoader workers, on the CPU) and a batch of inputs into features with
``network``. Files and in-memory tensors go through the same two steps (:meth:`Backbone.embed`).

This module is the registry only, and imports nothing heavy: the built-in backbones are declared
by name in :data:`BUILTIN` and their modules (torch, torchvision) are imported on first use, by
:func:`load_backbone`. So a command-line parser can list every backbone and ``--preprocess``
choice without loading torchvision (a second of start-up; see bench/bench_startup.py).

Adding a backbone is one module that calls
``register_backbone('name')`` on a factory ``f(weights=None, preprocess=None, seed=0,
allow_download=False) -> Backbone``; a built-in one is also declared in :data:`BUILTIN`.
"""
from __future__ import annotations

import importlib
from typing import Callable

from hubness_pr.errors import InputError
from hubness_pr.lazy import lazy_attributes

# name -> (module of features/backbones that registers it, one-line description for --help)
BUILTIN = {
    "vgg16": ("vgg16", "ImageNet VGG16 (torchvision), fc2 after ReLU, 4096-d: the original scripts"),
    "vgg16_random": ("vgg16", "VGG16 with seeded random weights (Naeem et al. 2020), 4096-d"),
    "vgg16_nvidia": ("nvidia", "NVIDIA's TorchScript vgg16.pt (StyleGAN2-ADA/StyleGAN3 metrics), "
                               "needs --weights vgg16.pt, 4096-d"),
    "efficientnet_lite0": ("efficientnet", "ImageNet EfficientNet-Lite0, 1280-d, offline"),
    "inception_v3": ("inception", "torchvision's ImageNet Inception-v3, pool, 2048-d (not FID's TF graph)"),
    "inception_fid": ("inception_fid", "the FID Inception (pytorch-fid's port of the TF graph, "
                                       "pt_inception-2015-12-05), pool3, 2048-d"),
    "dinov2_vits14": ("dinov2", "DINOv2 ViT-S/14, CLS token after the final norm, 384-d"),
    "dinov2_vitb14": ("dinov2", "DINOv2 ViT-B/14, CLS token after the final norm, 768-d"),
    "dinov2_vitl14": ("dinov2", "DINOv2 ViT-L/14 (FD_DINOv2's), CLS token after the final norm, 1024-d"),
    "dinov2_vitg14": ("dinov2", "DINOv2 ViT-g/14, CLS token after the final norm, 1536-d"),
    "clip_vitb32": ("clip", "CLIP ViT-B/32 (OpenAI weights, open_clip), image embedding, 512-d"),
    "clip_vitl14": ("clip", "CLIP ViT-L/14 (OpenAI weights, open_clip), image embedding, 768-d"),
    "clip_vitl14_datacomp": ("clip", "CLIP ViT-L/14, open_clip datacomp_xl_s13b_b90k (dgm-eval's), "
                                     "image embedding, 768-d"),
    "clip_vitl14_336": ("clip", "CLIP ViT-L/14 at 336 px (OpenAI weights, open_clip), L2-normalised image "
                                "embedding, 768-d: the CMMD reference's"),
}

# --preprocess: name -> description; preprocess.py implements each (tests/test_backbones.py checks the two agree)
PREPROCESS = {
    "pil": "PIL bilinear resize (antialiased) + ImageNet mean/std: the original getFeature.py",
    "tf1_bilinear": "[0, 255] input, TF1 bilinear resize (no antialiasing) + 255 x ImageNet mean/std: "
                    "torch-fidelity's VGG16 input pipeline (and torch-fidelity's / torchmetrics' DINOv2 one)",
    "pytorch_fid": "[0, 1] input, torch bilinear resize (align_corners=False, no antialiasing): pytorch-fid's; "
                   "the default of inception_fid",
    "clean": "clean-fid's resize: PIL bicubic of each channel as float, not rounded",
    "dgm_eval": "PIL bicubic resize (antialiased) + ImageNet mean/std: dgm-eval's and EDM2's ('pil') DINOv2 "
                "input; the default of dinov2_*",
    "clip": "bicubic resize of the short side, centre crop, CLIP mean/std: open_clip's; the default of clip_*",
    "cmmd": "centre square crop, PIL bicubic resize, CLIP mean/std: the CMMD reference's; the default of "
            "clip_vitl14_336",
}
PREPROCESS_ALIASES = {"nvidia": "tf1_bilinear"}  # the old name (before 0.2.0)

_REGISTRY: dict[str, Callable] = {}
_LAZY = {"Backbone": "base", "apply_state_dict": "base", "file_digest": "base", "load_state_dict": "base",
         "load_weights": "base"}
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


def register_backbone(name: str):
    """Decorator: register a backbone factory under ``name``."""
    def wrap(factory):
        _REGISTRY[name] = factory
        return factory
    return wrap


def available_backbones() -> list[str]:
    """Every backbone name: the built-in ones (declared, not imported) and any registered since."""
    return sorted(set(BUILTIN) | set(_REGISTRY))


def preprocess_name(name: str | None) -> str | None:
    """The current name of a ``--preprocess`` choice (an old alias resolved); ValueError if unknown."""
    if name is None:
        return None
    name = PREPROCESS_ALIASES.get(name, name)
    if name not in PREPROCESS:
        raise InputError(f"unknown --preprocess {name!r}; choose from {', '.join(PREPROCESS)}")
    return name


def load_backbone(name: str, *, weights=None, preprocess: str | None = None, seed: int = 0,
                  allow_download: bool = False):
    """Build the backbone ``name`` (see :func:`available_backbones`) with its weights, in eval mode."""
    if name not in _REGISTRY and name in BUILTIN:
        importlib.import_module(f".{BUILTIN[name][0]}", __name__)  # registers it
    if name not in _REGISTRY:
        raise InputError(f"unknown backbone {name!r}; available: {', '.join(available_backbones())}")
    backbone = _REGISTRY[name](weights=weights, preprocess=preprocess, seed=seed, allow_download=allow_download)
    backbone.network.eval()
    for p in backbone.network.parameters():
        p.requires_grad_(False)
    return backbone
