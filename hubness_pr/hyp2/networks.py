"""Hash networks: an image (or a feature vector) -> K real outputs, whose signs are the code.

| name | network | input | network lr |
|---|---|---|---|
| ``googlenet`` | torchvision Inception-v3 (ImageNet), ``fc`` replaced by a K-unit layer, aux head dropped | 448 | 0.02 (original) |
| ``alexnet`` | AlexNet features, fc6 and fc7 kept (with their dropouts and ReLUs), new K-unit layer | 224 | 0.01 (original) |
| ``resnet`` | ResNet-50 (ImageNet), ``fc`` replaced by a K-unit layer | 224 | 0.01 (ours: the original has none) |
| any backbone of ``features/`` | its feature network, fine-tuned, + a K-unit layer | its own | 0.01 |
| ``pixels`` | RGB pixels pooled to 16 x 16 (PIL antialiased resize), MLP head | 16 | 0.02 |
| ``mlp`` | MLP head on standardised feature vectors (``--dataset features``) | features | 0.02 |

Pretrained weights load as in ``features/``: ``--weights FILE`` or torchvision's cache, never
downloaded without ``allow_download``, a one-line error otherwise. New layers are drawn from
``seed``. To evaluate a checkpoint, this package's networks are built without weights (the
checkpoint holds them all); backbones of ``features/`` are built as in training, weights included. Every network but ``mlp`` takes images through its ``prepare`` (uint8 (H, W, 3) -> tensor):
a square PIL bilinear resize and ImageNet mean/std, as the original's ``transforms.Resize((s, s))``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torchvision

from hubness_pr.errors import InputError
from hubness_pr.extraction.backbones import apply_state_dict, available_backbones, load_backbone, load_weights
from hubness_pr.extraction.backbones.inception import pool_network
from hubness_pr.extraction.backbones.preprocess import PilResize

PIXELS_SIZE = 16
HIDDEN = 512


@dataclass
class HashNetwork:
    """``module`` maps a batch of prepared inputs to (B, hash_bit) outputs."""

    name: str
    hash_bit: int
    module: torch.nn.Module = field(repr=False)
    prepare: Callable[[np.ndarray], torch.Tensor] | None = field(repr=False)  # None: feature vectors
    lr: float
    meta: dict = field(default_factory=dict)


class MLPHead(torch.nn.Module):
    """(B, in_dim) -> standardise (fixed buffers) -> Linear -> ReLU -> Linear -> (B, hash_bit)."""

    def __init__(self, in_dim: int, hash_bit: int, hidden: int = HIDDEN):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.layers = torch.nn.Sequential(torch.nn.Linear(in_dim, hidden), torch.nn.ReLU(inplace=True),
                                          torch.nn.Linear(hidden, hash_bit))

    def forward(self, x):
        return self.layers((torch.flatten(x, 1) - self.mean) / self.std)


class AlexNetHash(torch.nn.Module):
    """The original's AlexNet: conv features, dropout, fc6, ReLU, dropout, fc7, ReLU, Linear(4096, K)."""

    def __init__(self, alexnet: torchvision.models.AlexNet, hash_bit: int):
        super().__init__()
        self.features, self.avgpool = alexnet.features, alexnet.avgpool  # avgpool: identity at 224
        self.hash_layer = torch.nn.Sequential(*alexnet.classifier[:6], torch.nn.Linear(4096, hash_bit))

    def forward(self, x):
        return self.hash_layer(torch.flatten(self.avgpool(self.features(x)), 1))


class FeatureHash(torch.nn.Module):
    def __init__(self, network: torch.nn.Module, dim: int, hash_bit: int):
        super().__init__()
        self.network, self.hash_layer = network, torch.nn.Linear(dim, hash_bit)

    def forward(self, x):
        return self.hash_layer(self.network(x))


def _torchvision_weights(builder: str, enum, what: str, weights, pretrained: bool, allow_download: bool):
    """(torchvision model with its ImageNet weights loaded, identity for meta); random when not ``pretrained``
    (the weights then come from a checkpoint)."""
    if not pretrained:
        return getattr(torchvision.models, builder)(weights=None), {"weights": "from checkpoint"}
    state, identity = load_weights(weights, enum, what, builder, allow_download)
    model = getattr(torchvision.models, builder)(weights=None)
    apply_state_dict(model, state, weights or identity["weights_file"], what)
    return model, identity


def _alexnet(hash_bit, weights, pretrained, allow_download):
    model, identity = _torchvision_weights("alexnet", torchvision.models.AlexNet_Weights.IMAGENET1K_V1, "AlexNet",
                                           weights, pretrained, allow_download)
    return AlexNetHash(model, hash_bit), PilResize(224), 0.01, identity


def _resnet(hash_bit, weights, pretrained, allow_download):
    model, identity = _torchvision_weights("resnet50", torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
                                           "ResNet-50", weights, pretrained, allow_download)
    model.fc = torch.nn.Linear(model.fc.in_features, hash_bit)
    return model, PilResize(224), 0.01, identity


def _googlenet(hash_bit, weights, pretrained, allow_download):
    if pretrained:
        state, identity = load_weights(weights, torchvision.models.Inception_V3_Weights.IMAGENET1K_V1,
                                       "Inception-v3", "inception_v3", allow_download)
        model = pool_network(state, weights or identity["weights_file"])
    else:
        model, identity = pool_network(None), {"weights": "from checkpoint"}
    model.dropout = torch.nn.Dropout(p=0.5)  # as torchvision's Inception3 before its fc
    model.fc = torch.nn.Linear(2048, hash_bit)
    return model, PilResize(448), 0.02, identity


def _pixels(hash_bit, weights, pretrained, allow_download):
    if weights is not None:
        raise InputError("--backbone pixels takes no --weights")
    return MLPHead(3 * PIXELS_SIZE * PIXELS_SIZE, hash_bit), PilResize(PIXELS_SIZE), 0.02, {"weights": "random"}


IMAGE_NETWORKS = {"googlenet": _googlenet, "alexnet": _alexnet, "resnet": _resnet, "pixels": _pixels}


# backbones of features/ that cannot be trained through: vgg16_nvidia is a frozen TorchScript module
# called on uint8 images one size at a time (it cannot take a stacked, augmented float batch)
_NOT_TRAINABLE = ("vgg16_nvidia",)


def network_names() -> list[str]:
    """Every ``--backbone``: this package's networks, the trainable backbones of ``features/`` and ``mlp``."""
    return list(IMAGE_NETWORKS) + [b for b in available_backbones() if b not in _NOT_TRAINABLE] + ["mlp"]


def build_network(name: str, hash_bit: int, *, weights=None, pretrained: bool = True, allow_download: bool = False,
                  seed: int = 0, feature_dim: int | None = None) -> HashNetwork:
    """The hash network ``name`` with K = ``hash_bit`` outputs. New layers are drawn from ``seed``; with
    ``pretrained=False`` no weights are read (a checkpoint provides them). ``mlp`` needs ``feature_dim``."""
    if name not in network_names():
        raise InputError(f"unknown --backbone {name!r}; available: {', '.join(network_names())}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if name == "mlp":
            if weights is not None:
                raise InputError("--backbone mlp (the hash head on feature files) takes no --weights")
            module, prepare, lr, identity = MLPHead(int(feature_dim), hash_bit), None, 0.02, {"weights": "random"}
        elif name in IMAGE_NETWORKS:
            module, prepare, lr, identity = IMAGE_NETWORKS[name](hash_bit, weights, pretrained, allow_download)
        else:  # features/ builds these only with their weights, also when a checkpoint replaces them
            backbone = load_backbone(name, weights=weights, seed=seed, allow_download=allow_download)
            for p in backbone.network.parameters():
                p.requires_grad_(True)
            module, prepare, lr = FeatureHash(backbone.network, backbone.dim, hash_bit), backbone.prepare, 0.01
            identity = {k: v for k, v in backbone.meta.items() if k.startswith("weights")}
    return HashNetwork(name=name, hash_bit=int(hash_bit), module=module, prepare=prepare, lr=lr,
                       meta={"backbone": name, **identity,
                             **(prepare.describe() if hasattr(prepare, "describe") else {})})
