"""CLIP image embeddings through open_clip's architectures (an optional dependency: ``pip install
open-clip-torch``, or the package's ``clip`` extra; imported on first use).

* ``clip_vitb32``: ViT-B/32, OpenAI's weights (QuickGELU), 512-d;
* ``clip_vitl14``: ViT-L/14, OpenAI's weights (QuickGELU), 768-d;
* ``clip_vitl14_datacomp``: ViT-L/14, open_clip's ``datacomp_xl_s13b_b90k`` (GELU), 768-d: dgm-eval's CLIP;
* ``clip_vitl14_336``: ViT-L/14 at 336 px, OpenAI's weights (QuickGELU), 768-d, **L2-normalised** as the CMMD
  reference's embedding (scenic's ``CLIP.encode_image(normalize=True)``), with its input (``--preprocess cmmd``).

The feature is ``model.encode_image(x)`` (the image tower with its projection, not L2-normalised but
for ``clip_vitl14_336``);
only the image tower is kept. Weights: ``--weights FILE`` (an open_clip checkpoint: a state dict in
``.bin``/``.pt``/``.pth`` or ``.safetensors``, as ``open_clip.load_checkpoint`` reads it) or the
Hugging Face cache (``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin`` of the
repository open_clip's pretrained table names, looked up as with ``HF_HUB_OFFLINE=1``: never
fetched), downloaded there only with ``--allow_download``. Preprocessing: ``clip`` (the default),
open_clip's evaluation transform (bicubic resize of the short side to 224, centre crop, CLIP mean/std).
"""
from __future__ import annotations

import logging
import os

import torch

from hubness_pr.extraction.backbones import register_backbone
from hubness_pr.extraction.backbones.base import Backbone, file_digest
from hubness_pr.extraction.backbones.preprocess import make_preprocess

# name -> (open_clip architecture, pretrained tag, QuickGELU, embedding dim, input size, L2-normalised,
#          default --preprocess)
MODELS = {
    "clip_vitb32": ("ViT-B-32", "openai", True, 512, 224, False, "clip"),
    "clip_vitl14": ("ViT-L-14", "openai", True, 768, 224, False, "clip"),
    "clip_vitl14_datacomp": ("ViT-L-14", "datacomp_xl_s13b_b90k", False, 768, 224, False, "clip"),
    "clip_vitl14_336": ("ViT-L-14-336", "openai", True, 768, 336, True, "cmmd"),
}
HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class _NoRandomInitNote(logging.Filter):
    """open_clip logs "No pretrained weights loaded ... initialized randomly" on the root logger when a
    model is built without its own loader; here the weights are loaded right after, so the note is wrong."""

    def filter(self, record):
        return "No pretrained weights loaded" not in record.getMessage()


def _open_clip():
    try:
        import open_clip
    except ImportError:
        raise ValueError("the CLIP backbones need the package open-clip-torch, which is not installed: "
                         "pip install open-clip-torch (or pip install 'hubness-pr[clip]')") from None
    return open_clip


def cached_weights(open_clip, arch: str, tag: str, allow_download: bool) -> str:
    """The checkpoint of open_clip's ``arch`` / ``tag`` in the Hugging Face cache (no network), or,
    with ``allow_download``, fetched there by open_clip; else a one-line ValueError."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.constants import HF_HUB_CACHE
    repo = open_clip.pretrained.get_pretrained_cfg(arch, tag).get("hf_hub", "").strip("/")
    for filename in HF_FILES:
        path = try_to_load_from_cache(repo, filename)
        if isinstance(path, str) and os.path.isfile(path):
            return path
    if not allow_download:
        raise ValueError(f"CLIP {arch} {tag} weights not found in the Hugging Face cache ({HF_HUB_CACHE}: looked for "
                         f"{' or '.join(HF_FILES)} of {repo}): give an open_clip checkpoint with --weights FILE, or "
                         f"pass --allow_download to fetch it there")
    return open_clip.pretrained.download_pretrained_from_hf(repo)


class UnitNorm(torch.nn.Module):
    """``module``'s output divided by its L2 norm along the last axis (scenic's ``encode_image(normalize=True)``)."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module(x)
        return y / torch.linalg.vector_norm(y, dim=-1, keepdim=True)


def _factory(name: str):
    arch, tag, quick_gelu, dim, size, unit, default = MODELS[name]

    def factory(weights=None, preprocess=None, seed=0, allow_download=False) -> Backbone:
        pname, prep = make_preprocess(preprocess, size, default=default)
        open_clip = _open_clip()
        if weights is not None:
            path, identity = str(weights), {"weights": "file"}
            if not os.path.isfile(path):
                raise ValueError(f"--weights {path}: no such file")
        else:
            path, identity = cached_weights(open_clip, arch, tag, allow_download), {"weights": f"open_clip {arch} {tag}"}
        note = _NoRandomInitNote()
        logging.getLogger().addFilter(note)
        try:
            model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=quick_gelu, pretrained_text=False)
        finally:
            logging.getLogger().removeFilter(note)
        try:
            open_clip.load_checkpoint(model, path, strict=True)
        except Exception as exc:  # torch, safetensors and open_clip raise many types for foreign files
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise ValueError(f"--weights {path}: not open_clip {arch} weights ({first[:200]})") from None
        identity.update(weights_file=os.path.basename(path), weights_sha256=file_digest(path))
        layer = f"encode_image ({dim}-d, projected, {'L2-normalised' if unit else 'not L2-normalised'})"
        meta = {"backbone": name, "layer": layer, "open_clip_model": arch, "quick_gelu": quick_gelu, **identity,
                "preprocess": pname, **prep.describe()}
        network = UnitNorm(model.visual) if unit else model.visual
        return Backbone(name=name, dim=dim, network=network, prepare=prep, meta=meta)
    factory.__name__ = factory.__qualname__ = name
    return factory


for _name in MODELS:
    register_backbone(_name)(_factory(_name))
