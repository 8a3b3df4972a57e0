"""DINOv2 ViTs (``dinov2_vits14``, ``dinov2_vitb14``, ``dinov2_vitl14``, ``dinov2_vitg14``): the CLS token
after the backbone's final norm, what ``torch.hub.load('facebookresearch/dinov2', name)(x)`` returns
and what FD_DINOv2 (dgm-eval, EDM2), torch-fidelity and torchmetrics use. ViT-L/14 is the one
published numbers report.

The architecture is written here for inference, after Meta's ``dinov2/models/vision_transformer.py``
and ``dinov2/layers/`` (Copyright Meta Platforms, Inc. and affiliates, Apache License 2.0,
https://github.com/facebookresearch/dinov2), with the hub models' settings: patch 14, a 518 x 518
position grid (37 x 37) interpolated bicubically to the input's grid (with the original's 0.1 offset),
LayerScale (``ls1``/``ls2``), no register tokens, LayerNorm eps 1e-6, an MLP FFN (SwiGLU for the
giant, ``w12``/``w3``), one plain list of blocks. The state-dict keys are those of the original
checkpoints (``dinov2_vitl14_pretrain.pth`` ...), so they load as they are: from ``--weights FILE``
or torch's hub cache (``torch.hub.get_dir()/checkpoints/``, where ``torch.hub.load`` puts them);
downloaded only with ``--allow_download``. tests/test_backbones_fid.py checks this code against
timm's DINOv2 ViTs (``vit_*_patch14_dinov2``) with the same random weights.

Preprocessing: ``dgm_eval`` (the default: PIL bicubic to 224, ImageNet mean/std, as dgm-eval and
EDM2's 'pil' mode) or ``tf1_bilinear`` (torch-fidelity's and torchmetrics': TF1 bilinear to 224).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hubness_pr.extraction.backbones import register_backbone
from hubness_pr.extraction.backbones.base import Backbone, apply_state_dict, hub_checkpoint
from hubness_pr.extraction.backbones.preprocess import make_preprocess

INPUT_SIZE = 224
PATCH = 14
GRID = 37  # the checkpoints' position grid: img_size 518 / patch 14
BASE_URL = "https://dl.fbaipublicfiles.com/dinov2"
# name -> (embed_dim, depth, num_heads, ffn)
ARCHS = {
    "dinov2_vits14": (384, 12, 6, "mlp"),
    "dinov2_vitb14": (768, 12, 12, "mlp"),
    "dinov2_vitl14": (1024, 24, 16, "mlp"),
    "dinov2_vitg14": (1536, 40, 24, "swiglu"),
}


class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH, stride=PATCH)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).unbind(2)
        x = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """The original's ``SwiGLUFFNFused``: hidden width ``(int(4 dim * 2 / 3) + 7) // 8 * 8``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.w12, self.w3 = nn.Linear(dim, 2 * hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, ffn: str):
        super().__init__()
        self.norm1, self.attn, self.ls1 = nn.LayerNorm(dim, eps=1e-6), Attention(dim, num_heads), LayerScale(dim)
        self.norm2, self.ls2 = nn.LayerNorm(dim, eps=1e-6), LayerScale(dim)
        self.mlp = (SwiGLU if ffn == "swiglu" else Mlp)(dim, 4 * dim)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """(B, 3, H, W), H and W multiples of 14 -> (B, dim): the CLS token after the final norm."""

    def __init__(self, dim: int, depth: int, num_heads: int, ffn: str = "mlp"):
        super().__init__()
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, GRID * GRID + 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # training only; in the checkpoints
        self.blocks = nn.ModuleList(Block(dim, num_heads, ffn) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def interpolate_pos_encoding(self, npatch: int, w: int, h: int, dtype):
        """The original's: the 37 x 37 grid resized bicubically by the scale factor ((w0 + 0.1) / 37, ...)."""
        N = self.pos_embed.shape[1] - 1
        if npatch == N and w == h:
            return self.pos_embed
        pos_embed = self.pos_embed.float()
        dim = pos_embed.shape[-1]
        w0, h0, M = w // PATCH, h // PATCH, int(math.sqrt(N))
        patch = F.interpolate(pos_embed[:, 1:].reshape(1, M, M, dim).permute(0, 3, 1, 2), mode="bicubic",
                              antialias=False, scale_factor=(float(w0 + 0.1) / M, float(h0 + 0.1) / M))
        if tuple(patch.shape[-2:]) != (w0, h0):
            raise ValueError(f"DINOv2: cannot interpolate the position grid to {w0} x {h0} patches")
        patch = patch.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((pos_embed[:, :1], patch), dim=1).to(dtype)

    def forward(self, x):
        B, _, w, h = x.shape  # (sic: w is the height, as in the original)
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x.shape[1] - 1, w, h, x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


def build(name: str) -> DinoVisionTransformer:
    dim, depth, heads, ffn = ARCHS[name]
    return DinoVisionTransformer(dim, depth, heads, ffn)


def _factory(name: str):
    def factory(weights=None, preprocess=None, seed=0, allow_download=False) -> Backbone:
        pname, prep = make_preprocess(preprocess, INPUT_SIZE, default="dgm_eval")
        filename = f"{name}_pretrain.pth"
        state, identity = hub_checkpoint(weights, filename, f"{BASE_URL}/{name}/{filename}", f"DINOv2 {name}",
                                         allow_download, source=f"dinov2 {filename}")
        net = build(name)
        apply_state_dict(net, state, weights or identity["weights_file"], f"DINOv2 {name}")
        meta = {"backbone": name, "layer": "CLS token after the final norm", **identity, "preprocess": pname,
                **prep.describe()}
        return Backbone(name=name, dim=ARCHS[name][0], network=net, prepare=prep, meta=meta)
    factory.__name__ = name
    factory.__qualname__ = name
    return factory


for _name in ARCHS:
    register_backbone(_name)(_factory(_name))
