"""VGG16 fc2 after ReLU (4096-d): ImageNet weights (``vgg16``) or seeded random ones (``vgg16_random``).

The original ``getFeature.py`` took ``classifier[:6]`` (fc1, ReLU, dropout, fc2, ReLU, dropout);
in eval mode the dropouts are identities, so ``classifier[:5]`` gives the same fc2-after-ReLU
features. ``vgg16_random`` follows Naeem et al. 2020 ("random embeddings") for domains far from
ImageNet; its seed is recorded in ``meta``.
"""
from __future__ import annotations

import torch
import torchvision

from hubness_pr.errors import InputError
from hubness_pr.extraction.backbones import register_backbone
from hubness_pr.extraction.backbones.base import Backbone, apply_state_dict, load_weights
from hubness_pr.extraction.backbones.preprocess import make_preprocess

INPUT_SIZE = 224


class VGG16Fc2(torch.nn.Module):
    """torchvision VGG16 up to fc2 + ReLU: (B, 3, 224, 224) -> (B, 4096), non-negative."""

    def __init__(self, vgg: torchvision.models.VGG):
        super().__init__()
        self.features, self.avgpool = vgg.features, vgg.avgpool
        self.head = vgg.classifier[:5]

    def forward(self, x):
        return self.head(torch.flatten(self.avgpool(self.features(x)), 1))


def _build(preprocessing, meta, vgg) -> Backbone:
    name, prep = preprocessing
    meta.update(layer="fc2 after ReLU (classifier[:5])", preprocess=name, **prep.describe())
    return Backbone(name=meta["backbone"], dim=4096, network=VGG16Fc2(vgg), prepare=prep, meta=meta)


@register_backbone("vgg16")
def vgg16(weights=None, preprocess=None, seed=0, allow_download=False) -> Backbone:
    """ImageNet VGG16: from ``weights`` (a torchvision-format state dict) or torchvision's cache."""
    preprocessing = make_preprocess(preprocess, INPUT_SIZE)  # validated before any heavy work
    state, identity = load_weights(weights, torchvision.models.VGG16_Weights.IMAGENET1K_V1, "VGG16", "vgg16",
                                   allow_download)
    vgg = torchvision.models.vgg16(weights=None)
    apply_state_dict(vgg, state, weights or identity["weights_file"], "VGG16")
    return _build(preprocessing, {"backbone": "vgg16", **identity}, vgg)


@register_backbone("vgg16_random")
def vgg16_random(weights=None, preprocess=None, seed=0, allow_download=False) -> Backbone:
    """VGG16 with torchvision's random initialisation drawn from ``seed`` (global RNG untouched)."""
    if weights is not None:
        raise InputError("vgg16_random takes no --weights (its weights are drawn from --seed); use --backbone vgg16")
    preprocessing = make_preprocess(preprocess, INPUT_SIZE)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vgg = torchvision.models.vgg16(weights=None)
    return _build(preprocessing, {"backbone": "vgg16_random", "weights": "random", "weights_seed": int(seed)}, vgg)
