"""Under torchrun: the process group the launcher described in the environment, and the quiet
ranks. The commands call these; the engine (:mod:`hubness_pr.engine.distributed`) reads no
environment variable."""
from __future__ import annotations

import datetime
import os

import torch

from hubness_pr.errors import InputError, one_line
from hubness_pr.engine.distributed import SINGLE, Group


def from_environment(device: str = "auto", timeout_s: float | None = None) -> tuple[Group, str]:
    """The process group torchrun set up (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), initialised here,
    and the device this rank computes on: NCCL with GPU ``LOCAL_RANK`` when the device is CUDA, Gloo
    on the CPU. Without torchrun's variables: :data:`SINGLE` and ``device`` unchanged."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE, device
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if local >= torch.cuda.device_count():
            raise InputError(f"torchrun process {local} needs GPU {local}, and this machine has "
                             f"{torch.cuda.device_count()} (one process per GPU; --device cpu runs on the CPU)")
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    backend = "nccl" if cuda else "gloo"
    if not torch.distributed.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s or float(os.environ.get("HUBNESS_DIST_TIMEOUT", "600")))
        torch.distributed.init_process_group(backend=backend, timeout=timeout)
    return Group(rank=rank, world=world, backend=backend), device


def step(group: Group, fn):
    """Run ``fn()`` on every rank and agree on the outcome, as :meth:`Group.step` does, by type: bad
    input (:class:`InputError`, and only it: an unwrapped OSError is a fault) on any rank is bad input
    on every rank (the failing rank raises its own error, the others an InputError naming that rank
    and its line, with its ``role``), so that no rank
    goes on into a collective the others never reach; any other exception on a rank is a fault,
    raised there with its traceback and on the others as a RuntimeError naming that rank."""
    error = None
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - every rank must hear of it; re-raised below
        error, result = exc, None
    if not group.active:
        if error is not None:
            raise error
        return result
    line = None if error is None else (isinstance(error, InputError), one_line(error),
                                       error.role if isinstance(error, InputError) else None)
    outcomes = group.gather_objects(line)
    if error is not None:
        raise error
    failed = next(((rank, outcome) for rank, outcome in enumerate(outcomes) if outcome is not None), None)
    if failed is not None:
        rank, (bad_input, text, role) = failed
        if bad_input:
            raise InputError(f"process {rank} of {group.world}: {text}", role=role)
        raise RuntimeError(f"process {rank} of {group.world} failed: {text}")
    return result


def silence() -> None:
    """A rank other than 0 prints nothing: rank 0 reports for the run (its errors included)."""
    import logging
    import sys

    logging.getLogger().setLevel(logging.CRITICAL + 1)
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the process's life (progress bars too)
