"""The FID Inception: pytorch-fid's port of TensorFlow's ``inception-2015-12-05`` graph, pool3 features
(2048-d, after the global average pool), inputs 299 x 299.

The architecture below is torchvision's Inception3 with the blocks that differ in the TF graph,
written after pytorch-fid's ``pytorch_fid/inception.py`` (``FIDInceptionA``, ``FIDInceptionC``,
``FIDInceptionE_1``, ``FIDInceptionE_2``, ``fid_inception_v3``; Copyright Maximilian Seitzer,
Apache License 2.0, https://github.com/mseitzer/pytorch-fid), so that running it does not need
pytorch-fid. The state-dict keys are those of ``fid_inception_v3()``, so pytorch-fid's weight file
``pt_inception-2015-12-05-6726825d.pth`` loads as it is: from ``--weights FILE`` or torch's hub cache
(``torch.hub.get_dir()/checkpoints/``, where pytorch-fid's own download puts it); it is downloaded
only with ``--allow_download``.

Preprocessing: ``pytorch_fid`` (the default) is pytorch-fid's ``InceptionV3(resize_input=True,
normalize_input=True)``: [0, 1], torch bilinear resize to 299 (align_corners=False), ``2 x - 1``.
Any other choice (``clean``: clean-fid's resize; ``tf1_bilinear``: torch-fidelity's) feeds the
network the resized image in [0, 255] as ``(x - 128) / 128``, the TF graph's own input scaling that
clean-fid and torch-fidelity apply. The network here is pytorch-fid's port in every case, not
clean-fid's TorchScript graph: features are close to, not equal to, those of the TF graph.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.inception import InceptionA, InceptionC, InceptionE

from hubness_pr.extraction.backbones import register_backbone
from hubness_pr.extraction.backbones.base import Backbone, apply_state_dict, hub_checkpoint
from hubness_pr.extraction.backbones.preprocess import make_preprocess

INPUT_SIZE = 299
FILENAME = "pt_inception-2015-12-05-6726825d.pth"
URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FILENAME}"
# the network's input scaling for each --preprocess: [0, 1] -> 2x - 1 (pytorch-fid), else (x - 128) / 128 in [0, 255]
PYTORCH_FID_SCALING = {"mean": (0.5,) * 3, "std": (0.5,) * 3}
TF_SCALING = {"mean": (128 / 255,) * 3, "std": (128 / 255,) * 3}


def _pool_avg(x):  # TensorFlow's average pool leaves the padded zeros out of the average
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(InceptionA):
    def forward(self, x):
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)), b3,
                          self.branch_pool(_pool_avg(x))], 1)


class FIDInceptionC(InceptionC):
    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_pool_avg(x))], 1)


class FIDInceptionE(InceptionE):
    """InceptionE with the TF graph's pool branch: average pool without padding (Mixed_7b) or, in the
    last block (Mixed_7c), a max pool (``max_pool=True``)."""

    def __init__(self, in_channels, max_pool: bool = False):
        super().__init__(in_channels)
        self.max_pool = max_pool

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _pool_avg(x)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], 1)


def fid_inception() -> torchvision.models.Inception3:
    """The FID Inception with pytorch-fid's module names (1008 classes, no auxiliary classifier), uninitialised."""
    net = torchvision.models.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE(1280)
    net.Mixed_7c = FIDInceptionE(2048, max_pool=True)
    return net


class Pool3(torch.nn.Module):
    """pytorch-fid's blocks 0-3 of the FID Inception: (B, 3, 299, 299) scaled input -> (B, 2048) pool3."""

    def __init__(self, net: torchvision.models.Inception3):
        super().__init__()
        self.blocks = torch.nn.Sequential(
            net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, torch.nn.MaxPool2d(kernel_size=3, stride=2),
            net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, torch.nn.MaxPool2d(kernel_size=3, stride=2),
            net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d,
            net.Mixed_6e, net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, torch.nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        return torch.flatten(self.blocks(x), 1)


@register_backbone("inception_fid")
def inception_fid(weights=None, preprocess=None, seed=0, allow_download=False) -> Backbone:
    name, _ = make_preprocess(preprocess, INPUT_SIZE, default="pytorch_fid")  # validated before any heavy work
    scaling = PYTORCH_FID_SCALING if name == "pytorch_fid" else TF_SCALING
    name, prep = make_preprocess(preprocess, INPUT_SIZE, default="pytorch_fid", **scaling)
    state, identity = hub_checkpoint(weights, FILENAME, URL, "the FID Inception (pytorch-fid's)", allow_download,
                                     check_hash=True, source=f"pytorch-fid {FILENAME}")
    net = fid_inception()
    apply_state_dict(net, state, weights or identity["weights_file"], "FID Inception (pt_inception-2015-12-05)")
    meta = {"backbone": "inception_fid", "layer": "pool3 (2048-d, pytorch-fid block 3)", **identity,
            "preprocess": name, **prep.describe()}
    return Backbone(name="inception_fid", dim=2048, network=Pool3(net), prepare=prep, meta=meta)
