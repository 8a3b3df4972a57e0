"""Checkpoints: network and proxies with everything needed to rebuild and to refuse a mismatch.

A checkpoint is a ``torch.save`` dict (read back with ``weights_only=True``): ``format``,
``network`` (state dict), ``proxies`` (C, K), ``hash_bit``, ``num_classes``, ``zeta``,
``min_distance``, ``backbone``, ``feature_dim`` (mlp only), ``dataset``, ``epoch``, ``val_map``,
``history`` (per-epoch log), ``lr`` and ``config`` (the run's options). Written atomically.

Reading one checks it whole before anything uses it: a file that is not a ``torch.save`` zip archive
(a plain pickle, a truncated file) is refused before it is unpickled; torch's warnings while
loading are silenced (the one error line says what is wrong); every key above must be present with
its type, and :func:`load_network_state` checks the state dict against the network built for it
(names, shapes, finite floating values) before loading. Each problem is one ValueError line.
"""
from __future__ import annotations

import json
import math
import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from hubness_pr.errors import InputError
from hubness_pr.io.outputs import atomic_write

FORMAT = "hyp2 checkpoint v1"
TENSOR_KEYS = ("network", "proxies")
_NUMBER = (int, float)
REQUIRED = {"hash_bit": int, "num_classes": int, "backbone": str, "dataset": str, "zeta": _NUMBER,
            "beta": _NUMBER, "seed": int, "epoch": int, "val_map": _NUMBER, "lr": _NUMBER, "history": list,
            "config": dict, "network": dict, "proxies": torch.Tensor}
TRAINING_KEYS = ("epochs", "batch_size", "rate")  # of ``config``, reported by --test


def save_checkpoint(path, payload: dict) -> None:
    """Write ``payload``: tensors and state dicts as they are, everything else as plain JSON-like values
    (numpy scalars become Python numbers, so that ``weights_only`` loading accepts the file)."""
    tensors = {k: v for k, v in payload.items() if k in TENSOR_KEYS}
    plain = json.loads(json.dumps({k: v for k, v in payload.items() if k not in TENSOR_KEYS},
                                  default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    with atomic_write(path, what="checkpoint") as handle:
        torch.save({"format": FORMAT, **plain, **tensors}, handle)


def load_checkpoint(path) -> dict:
    """The checkpoint at ``path``, checked (module docstring); ValueError (one line) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise _bad(path, "no checkpoint here; train first (the same command without --test) "
                         "or name one with --checkpoint")
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as exc:
        raise _bad(path, f"cannot read the checkpoint ({exc.strerror or exc})") from None
    if not is_zip:
        raise _bad(path, "not a HyP² checkpoint (not a torch.save zip archive: another format, "
                         "such as a plain pickle, or a truncated file)")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols and formats: the line below says it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise _bad(path, "not a HyP² checkpoint (it holds objects or pickle instructions other than "
                         "those of tensors and plain values; refused unread)") from None
    except Exception as exc:  # torch raises many types for foreign or damaged files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise _bad(path, f"not a readable checkpoint ({first})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise _bad(path, "not a HyP² checkpoint of this toolkit")
    check_payload(payload, path)
    return payload


def _bad(path, message: str) -> InputError:
    """Bad input in the checkpoint ``path``: ``PATH: message`` (the role, "checkpoint", is a field only)."""
    return InputError(message, file=path, role="checkpoint", show_role=False)


def _damaged(path, what: str) -> InputError:
    return _bad(path, f"damaged checkpoint: {what}")


def check_payload(payload: dict, path) -> None:
    """ValueError (one line) unless every key of the format is there with its type and the proxies are a
    finite (num_classes, hash_bit) float tensor."""
    for key, kind in REQUIRED.items():
        value = payload.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            got = "missing" if key not in payload else type(value).__name__
            raise _damaged(path, f"{key!r} is {got}, expected {getattr(kind, '__name__', 'a number')}")
    for key in ("zeta", "beta", "val_map", "lr"):
        if not math.isfinite(payload[key]):
            raise _damaged(path, f"{key!r} is {payload[key]}")
    if not 1 <= payload["hash_bit"] <= 256 or payload["num_classes"] < 2:
        raise _damaged(path, f"hash_bit {payload['hash_bit']}, num_classes {payload['num_classes']}")
    missing = [k for k in TRAINING_KEYS if k not in payload["config"]]
    if missing:
        raise _damaged(path, f"config has no {missing[0]!r}")
    proxies = payload["proxies"]
    want = (payload["num_classes"], payload["hash_bit"])
    if tuple(proxies.shape) != want or not proxies.is_floating_point():
        raise _damaged(path, f"proxies of shape {tuple(proxies.shape)} ({proxies.dtype}), expected {want} floats")
    if not torch.isfinite(proxies).all():
        raise _damaged(path, "proxies hold NaN or infinite values")
    bad = [k for k, v in payload["network"].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise _damaged(path, f"network entry {bad[0]!r} is not a tensor")


def load_network_state(module: torch.nn.Module, state: dict, path) -> None:
    """Load the checkpoint's network ``state`` into ``module`` after checking it against the module's own:
    the same names, the same shapes, floating tensors where the module has them, finite values."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise _damaged(path, f"network has no {missing[0]!r} ({len(missing)} of {len(own)} entries missing)")
    extra = [k for k in state if k not in own]
    if extra:
        raise _damaged(path, f"network has an unknown entry {extra[0]!r} ({len(extra)} unknown)")
    for key, want in own.items():
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            raise _damaged(path, f"network entry {key!r} has shape {tuple(got.shape)}, expected {tuple(want.shape)}")
        if want.is_floating_point() != got.is_floating_point():
            raise _damaged(path, f"network entry {key!r} is {got.dtype}, expected {want.dtype}")
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise _damaged(path, f"network entry {key!r} holds NaN or infinite values")
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as exc:  # anything the checks above did not foresee
        raise _damaged(path, (str(exc).strip().splitlines() or ["load_state_dict failed"])[0][:160]) from None


def check_compatible(payload: dict, path, *, backbone: str, hash_bit: int, num_classes: int,
                     feature_dim: int | None = None) -> None:
    """ValueError (one line) unless the checkpoint's architecture is the one asked for."""
    asked = {"backbone": backbone, "hash_bit": int(hash_bit), "num_classes": int(num_classes)}
    if backbone == "mlp":
        asked["feature_dim"] = feature_dim
    held = {key: payload.get(key) for key in asked}
    if held != asked:
        diff = ", ".join(f"{k} {held[k]} (asked {asked[k]})" for k in asked if held[k] != asked[k])
        raise _bad(path, f"checkpoint of another architecture: {diff}")
