"""torchvision Inception-v3 (ImageNet), 2048-d pool features (after global average pooling, before
dropout and the classifier), inputs 299 x 299.

This is torchvision's port of Inception-v3, not the TensorFlow graph that FID uses: its features are
close to but not the same as the FID ones, so numbers from it are comparable with each other, not
with published FIDs. Weights: torchvision's cache (``inception_v3_google-0cc3c7bd.pth``) or
``--weights`` (a torchvision-format state dict, auxiliary classifier included or not).
"""
from __future__ import annotations

import torch
import torchvision

from hubness_pr.extraction.backbones import register_backbone
from hubness_pr.extraction.backbones.base import Backbone, apply_state_dict, load_weights
from hubness_pr.extraction.backbones.preprocess import make_preprocess

INPUT_SIZE = 299


def pool_network(state: dict | None, path="weights") -> torch.nn.Module:
    """Inception3 as torchvision builds it for its ImageNet weights (``transform_input=True``), with
    ``state`` loaded and the classifier replaced by the identity: (B, 3, 299, 299) -> (B, 2048)."""
    with_aux = state is None or any(k.startswith("AuxLogits.") for k in state)
    net = torchvision.models.inception_v3(weights=None, aux_logits=with_aux, init_weights=state is None,
                                          transform_input=True)
    if state is not None:
        apply_state_dict(net, state, path, "Inception-v3")
    net.aux_logits, net.AuxLogits = False, None
    net.dropout, net.fc = torch.nn.Identity(), torch.nn.Identity()
    return net


@register_backbone("inception_v3")
def inception_v3(weights=None, preprocess=None, seed=0, allow_download=False) -> Backbone:
    name, prep = make_preprocess(preprocess, INPUT_SIZE)
    state, identity = load_weights(weights, torchvision.models.Inception_V3_Weights.IMAGENET1K_V1,
                                   "Inception-v3", "inception_v3", allow_download)
    net = pool_network(state, weights or identity["weights_file"])
    meta = {"backbone": "inception_v3", "layer": "pool (2048-d, before dropout and fc)", **identity,
            "preprocess": name, **prep.describe(), "transform_input": True}
    return Backbone(name="inception_v3", dim=2048, network=net, prepare=prep, meta=meta)
