"""Device names: ``'auto' | 'cpu' | 'cuda' | 'cuda:N'`` to a usable torch.device, shared by every command,
and :func:`exact_matmul`: full float32 products for the distances and the feature extraction."""
from __future__ import annotations

import contextlib

import torch

from hubness_pr.errors import InputError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Map ``'auto' | 'cpu' | 'cuda' | 'cuda:N'`` (or a torch.device) to a usable torch.device;
    :class:`InputError` (``role="device"``) for a device that is not here or a name that is none."""
    if isinstance(device, torch.device):
        spec = str(device)
    else:
        spec = "auto" if device is None else str(device)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(f"device {spec!r} was requested but CUDA is not available here; use --device cpu",
                             role="device")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {spec!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible",
                             role="device")
        return dev
    raise InputError(f"The 'device' parameter must be 'auto', 'cpu', 'cuda' or 'cuda:N'. Got {spec!r} instead.",
                     role="device")


@contextlib.contextmanager
def exact_matmul():
    """Run float32 matrix products and convolutions in full IEEE float32 (no TF32 on CUDA, no bf16
    on the CPU); the previous settings are restored after.

    Matmuls go through ``torch.set_float32_matmul_precision`` only ("highest" also turns cuBLAS's
    TF32 off): setting the legacy ``torch.backends.cuda.matmul.allow_tf32`` beside it leaves torch
    >= 2.9 in a "mix of legacy and new APIs" state in which the next precision query raises, e.g.
    after a caller's ``set_float32_matmul_precision("medium")``."""
    old_precision = torch.get_float32_matmul_precision()
    old_cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old_precision)
        torch.backends.cudnn.allow_tf32 = old_cudnn_tf32
