"""Several Gloo processes against one: run a test's function of a process group on spawned ranks and in
this process, each with one torch thread (the test process keeps its own setting), for the tests that
check that ranks give one process's results."""
import json

import torch
import torch.multiprocessing as mp

from hubness_pr.engine.distributed import SINGLE, Group


def one_thread(fn, group):
    """``fn(group)`` with one torch thread, the caller's setting restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(group)
    finally:
        torch.set_num_threads(threads)


def _worker(rank, world, store, out, fn):
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        results = one_thread(fn, Group(rank=rank, world=world, backend="gloo"))
        with open(f"{out}.{rank}", "w") as handle:
            json.dump(results, handle)
    finally:
        torch.distributed.destroy_process_group()


def on_ranks(fn, world, tmp_path) -> list:
    """``fn(group)`` on ``world`` spawned Gloo ranks (``fn``: a module-level function returning JSON-able
    values); each rank's result, in rank order."""
    out = tmp_path / "result.json"
    mp.start_processes(_worker, args=(world, str(tmp_path / "store"), str(out), fn), nprocs=world, join=True,
                       start_method="spawn")
    return [json.loads(out.with_name(f"{out.name}.{rank}").read_text()) for rank in range(world)]


def single(fn):
    """``fn`` in this process, on one thread, as a rank would run it."""
    return one_thread(fn, SINGLE)
