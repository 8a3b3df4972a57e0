"""Several processes, one result: the work of every tiled pass split across torch.distributed ranks.

``torchrun --nproc_per_node=G improved_precision_recall_hubness.py ...`` starts G ranks (NCCL with one
GPU each, Gloo on the CPU). Every rank holds both feature sets (or memory-maps them) and runs a share
of the tiles of each pass; only per-sample results move between ranks, never distance tiles:

* k-NN pass: each rank reduces its tiles into full-length candidate lists; the lists are gathered
  and merged (the k + 16 smallest screened distances of the union; a pair lives in one tile only).
  Every sample left out of the merged list has a screened distance at least its last one, so the
  proof of :mod:`hubness_pr.engine.knn` holds as in one process. The exact step (re-measurement, fallback) is
  split by rows and the rows' results are gathered.
* cross pass: each rank reduces its tiles into full-length per-sample results, and those are
  combined by the reduction's rule of :data:`hubness_pr.engine.reductions.TABLE` (any, sum, min, argmax with
  the lower index on ties) - the same rule that merges threads and tiles in one process.

So neighbours and decisions equal the single-process run; metric values agree to float rounding.
:class:`Group` with one process is the single-process case (no communication). Rank 0 writes every
output; the other ranks print nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hubness_pr.errors import InputError


# torch.distributed reductions of the table's rules (hubness_pr.engine.reductions) (argmax is two steps, see Group.combine)
_OPS = {"any": "MAX", "sum": "SUM", "logsum": "SUM", "min": "MIN"}


def contiguous_share(n: int, rank: int, world: int) -> slice:
    """Process ``rank``'s contiguous share of ``n`` rows among ``world`` processes: the shares in rank
    order are the rows in order, and the first ``n % world`` ranks get one more."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


@dataclass(frozen=True)
class Group:
    """The processes of a run: ``rank`` of ``world`` (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    backend: str = "none"

    @property
    def active(self) -> bool:
        return self.world > 1

    def share(self, count: int) -> list:
        """The indices of ``count`` work items this rank does: every ``world``-th, from ``rank``."""
        return list(range(self.rank, count, self.world))

    def rows(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` rows (the first ``n % world`` ranks get one more)."""
        return contiguous_share(n, self.rank, self.world)

    def all_rows(self, n: int) -> list:
        return [Group(r, self.world, self.backend).rows(n) for r in range(self.world)]

    # ------------------------------------------------------------------ collectives (no-ops alone)

    def gather_rows(self, local: torch.Tensor, n: int) -> torch.Tensor:
        """Concatenate every rank's ``rows(n)`` block of a per-row tensor (uneven blocks allowed)."""
        if not self.active:
            return local
        size = max(s.stop - s.start for s in self.all_rows(n))
        padded = local.new_zeros((size,) + tuple(local.shape[1:]), device=_collective_device(self))
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        torch.distributed.all_gather(parts, padded)
        return torch.cat([part[: s.stop - s.start] for part, s in zip(parts, self.all_rows(n))]).to(local.device)

    def gather_all(self, local: torch.Tensor) -> list:
        """Every rank's tensor of one shape, in rank order."""
        if not self.active:
            return [local]
        moved = local.to(_collective_device(self)).contiguous()
        parts = [torch.empty_like(moved) for _ in range(self.world)]
        torch.distributed.all_gather(parts, moved)
        return [part.to(local.device) for part in parts]

    def combine(self, op: str, value):
        """Combine a per-sample result over the ranks by the rule ``op`` of an entry of :data:`hubness_pr.engine.reductions.TABLE` ('any',
        'sum', 'logsum' (float sums), 'min', or 'argmax' for a (ratio, index) pair: larger ratio, then lower index, -1 =
        none)."""
        if not self.active:
            return value
        dist = torch.distributed
        dev = _collective_device(self)  # NCCL reduces CUDA tensors only; the result goes back
        if op == "argmax":
            ratio, index = value
            best = ratio.to(dev, copy=True)
            dist.all_reduce(best, op=dist.ReduceOp.MAX)
            big = torch.iinfo(torch.int64).max
            index_here = index.to(dev)
            mine = torch.where((ratio.to(dev) == best) & (index_here >= 0), index_here,
                               torch.full_like(index_here, big))
            dist.all_reduce(mine, op=dist.ReduceOp.MIN)
            return best.to(ratio.device), torch.where(mine == big, torch.full_like(mine, -1), mine).to(index.device)
        if op == "any":
            flags = value.to(dev, torch.uint8)
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            return flags.to(value.device, torch.bool)
        out = value.to(dev, copy=True)
        dist.all_reduce(out, op=getattr(dist.ReduceOp, _OPS[op]))
        return out.to(value.device)

    def step(self, fn):
        """Run ``fn()`` on every rank and agree on the outcome: if it raised on any rank, every rank
        raises (the failing rank its own error, the others one naming that rank and its line: an
        :class:`InputError` where the failure was bad input, by its type, a RuntimeError where it
        was a fault), so that no rank goes on into a collective the others never reach."""
        error = None
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - every rank must hear of it; re-raised below
            error, result = exc, None
        if not self.active:
            if error is not None:
                raise error
            return result
        messages = [None] * self.world
        text = None if error is None else (isinstance(error, InputError),
                                           (str(error).strip().splitlines() or [type(error).__name__])[0])
        torch.distributed.all_gather_object(messages, text)
        if error is not None:
            raise error
        failed = [(rank, message) for rank, message in enumerate(messages) if message is not None]
        if failed:
            rank, (bad_input, message) = failed[0]
            if bad_input:
                raise InputError(f"process {rank} of {self.world}: {message}")
            raise RuntimeError(f"process {rank} of {self.world} failed: {message}")
        return result

    def gather_objects(self, obj) -> list:
        """Every rank's picklable ``obj``, in rank order (small things: names, file lists)."""
        if not self.active:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out


SINGLE = Group()


def _collective_device(group: Group) -> torch.device:
    if group.backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shutdown(group: Group) -> None:
    """Leave the process group (every rank, at the end of a run): a Gloo group left alive at exit can
    abort the process from its C++ threads ("terminate called without an active exception")."""
    if group.active and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
