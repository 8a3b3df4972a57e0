"""One run's settings and resources, built once and passed as one argument down every engine pass.

:class:`RunContext` holds the device, the memory budget of the distance tiles, the CPU route
(``"auto"``, ``"fused"``: the numba kernels of :mod:`hubness_pr.engine.kernels`, ``"torch"``), the processes
sharing the work (:class:`hubness_pr.engine.distributed.Group`), whether progress bars show, and the resources a
run owns: the thread pool of the fused kernels (created on first use, sized from
``torch.get_num_threads()`` when the context is built, shut down by :meth:`RunContext.close` or at the
end of a ``with`` block) and the probe of torch's private oneDNN GEMM (run once per context; where the
op is missing or wrong, the public path serves). Nothing here reads the environment: the command
line's ``--route`` (whose default the metric command takes from ``HUBNESS_KERNELS``) is the only place
a route comes from outside the caller.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from hubness_pr.engine import kernels
from hubness_pr.engine.distances import DEFAULT_MEMORY_BUDGET, onednn_gemm_works, resolve_device
from hubness_pr.engine.distributed import SINGLE, Group

ROUTES = ("auto", "fused", "torch")


class ThreadPool(ThreadPoolExecutor):
    """The fused kernels' threads: an executor that says how many it has (``threads``)."""

    def __init__(self, threads: int):
        super().__init__(max_workers=threads, thread_name_prefix="hubness")
        self.threads = threads

# The route of a context built without one. The tests' ``kernel_route`` fixture sets it for the library
# calls of a test; nothing else changes it.
DEFAULT_ROUTE = "auto"


@dataclass(frozen=True, eq=False)
class RunContext:
    """A run's settings (frozen) and resources (its thread pool, the oneDNN probe)."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    route: str | None = None       # None: DEFAULT_ROUTE
    group: Group = SINGLE
    progress: bool | None = None   # tqdm bars (None: only on a terminal)
    threads: int = 0               # fused kernels' threads (0: torch.get_num_threads() now)

    def __post_init__(self):
        route = DEFAULT_ROUTE if self.route is None else self.route
        if route not in ROUTES:
            raise ValueError(f"The 'route' parameter must be one of {', '.join(ROUTES)}. Got {route!r} instead.")
        object.__setattr__(self, "route", route)
        object.__setattr__(self, "device", resolve_device(self.device))
        object.__setattr__(self, "threads", int(self.threads) or max(1, torch.get_num_threads()))
        object.__setattr__(self, "_pool", None)
        object.__setattr__(self, "_onednn", None)
        object.__setattr__(self, "_lock", threading.Lock())

    @classmethod
    def build(cls, ctx: RunContext | None = None, *, device="auto", memory_budget: int = DEFAULT_MEMORY_BUDGET,
              route: str | None = None, group: Group = SINGLE, progress: bool | None = None) -> RunContext:
        """``ctx`` itself, or a context of the given settings (the public functions' keyword
        arguments)."""
        if ctx is not None:
            return ctx
        return cls(device=device, memory_budget=memory_budget, route=route, group=group, progress=progress)

    def fused(self, pairs: float | None = None, dim: int = 1) -> bool:
        """Whether the fused CPU kernels serve the tiles of a run of ``pairs`` distances of ``dim``
        dimensions (None: any size): never off the CPU or without numba; ``"fused"`` whatever the
        size, ``"torch"`` never, ``"auto"`` from :func:`hubness_pr.engine.kernels.small_work` on."""
        if self.device.type != "cpu" or self.route == "torch" or not kernels.available():
            return False
        return self.route == "fused" or pairs is None or not kernels.small_work(pairs, dim)

    @property
    def pool(self) -> ThreadPool | None:
        """The fused kernels' thread pool (None with one thread), created on first use."""
        if self.threads <= 1:
            return None
        with self._lock:
            if self._pool is None:
                object.__setattr__(self, "_pool", ThreadPool(self.threads))
            return self._pool

    @property
    def onednn(self) -> bool:
        """Whether torch's private oneDNN inner product serves the CPU GEMMs of this run: probed
        once (:func:`hubness_pr.engine.distances.onednn_gemm_works`), False off the CPU."""
        if self._onednn is None:
            object.__setattr__(self, "_onednn", self.device.type == "cpu" and onednn_gemm_works())
        return self._onednn

    def close(self) -> None:
        """Shut the thread pool down (a later fused call creates a new one)."""
        with self._lock:
            pool, _ = self._pool, object.__setattr__(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True)

    def __enter__(self) -> RunContext:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)
