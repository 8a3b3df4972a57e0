"""Checkpoints: network and proxies with everything needed to rebuild and to refuse a mismatch.

A checkpoint is a ``torch.save`` dict (read back with ``weights_only=True``): ``format``,
``network`` (state dict), ``proxies`` (C, K), ``hash_bit``, ``num_classes``, ``zeta``,
``min_distance``, ``backbone``, ``feature_dim`` (mlp only), ``dataset``, ``epoch``, ``val_map``,
``history`` (per-epoch log) and ``config`` (the run's options). Written atomically.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from features.outputs import atomic_write

FORMAT = "hyp2 checkpoint v1"
TENSOR_KEYS = ("network", "proxies")


def save_checkpoint(path, payload: dict) -> None:
    """Write ``payload``: tensors and state dicts as they are, everything else as plain JSON-like values
    (numpy scalars become Python numbers, so that ``weights_only`` loading accepts the file)."""
    tensors = {k: v for k, v in payload.items() if k in TENSOR_KEYS}
    plain = json.loads(json.dumps({k: v for k, v in payload.items() if k not in TENSOR_KEYS},
                                  default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    with atomic_write(path, what="checkpoint") as handle:
        torch.save({"format": FORMAT, **plain, **tensors}, handle)


def load_checkpoint(path) -> dict:
    """The checkpoint at ``path``; ValueError (one line) when it is missing or not a HyP² checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no checkpoint here; train first (the same command without --test) "
                         f"or name one with --checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or damaged files
        raise ValueError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0][:160]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a HyP² checkpoint of this toolkit")
    return payload


def check_compatible(payload: dict, path, *, backbone: str, hash_bit: int, num_classes: int,
                     feature_dim: int | None = None) -> None:
    """ValueError (one line) unless the checkpoint's architecture is the one asked for."""
    asked = {"backbone": backbone, "hash_bit": int(hash_bit), "num_classes": int(num_classes)}
    if backbone == "mlp":
        asked["feature_dim"] = feature_dim
    held = {key: payload.get(key) for key in asked}
    if held != asked:
        diff = ", ".join(f"{k} {held[k]} (asked {asked[k]})" for k in asked if held[k] != asked[k])
        raise ValueError(f"{path}: checkpoint of another architecture: {diff}")
