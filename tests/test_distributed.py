"""Several processes (torch.distributed, Gloo on localhost) give the single process's results:
same neighbours, same decisions, values within float rounding; uneven shards, idle ranks, a set
smaller than the number of ranks."""
import json
import os
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import hubness_pr
from hubness_pr.engine.distributed import SINGLE, Group

CASES = {  # name: (n_real, n_fake, dim, options)
    "uneven": (331, 277, 9, dict(memory_budget=2**20)),     # shards and tiles that do not divide evenly
    "one_tile": (40, 35, 5, {}),                             # fewer tiles than ranks: some ranks idle
    "tiny": (2, 3, 4, dict(k=1, dc_k=1, hubs_k=1)),          # fewer real samples than ranks
}


def data(name):
    n_real, n_fake, dim, options = CASES[name]
    rng = np.random.default_rng(len(name))
    real = np.round(rng.standard_normal((n_real, dim)) * 2) / 2  # ties too
    fake = rng.standard_normal((n_fake, dim)) + 0.2
    return real.astype(np.float32), fake.astype(np.float32), options


def summary(ev, graph):
    out = hubness_pr.json_safe({key: v for key, v in hubness_pr.to_dict(ev).items() if key not in ("timings", "params")})
    out["realism"] = ev.realism.scores.tolist()
    out["rarity"] = hubness_pr.json_safe(ev.rarity.scores.tolist())
    out["occ"] = [ev.real_k_occurrence.tolist(), ev.fake_k_occurrence.tolist()]
    out["knn"] = [graph.indices.tolist(), graph.sq_distances.tolist()]
    return out


def run_all(group):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_all(group)
    finally:  # the test process goes on with its own setting
        torch.set_num_threads(threads)


def _run_all(group):
    results = {}
    for name in CASES:
        real, fake, options = data(name)
        ev = hubness_pr.evaluate(real=real, fake=fake, group=group, **options)
        graph = hubness_pr.nearest_neighbors(fake, options.get("k", 3), group=group)
        results[name] = summary(ev, graph)
        assert ev.params["processes"] == group.world
    results["real_rarity"] = hubness_pr.real_rarity_scores(real=data("uneven")[0], group=group).scores.tolist()
    return results


def _worker(rank, world, store, out):
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        results = run_all(Group(rank=rank, world=world, backend="gloo"))
        with open(f"{out}.{rank}", "w") as handle:
            json.dump(hubness_pr.json_safe(results), handle)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_give_the_single_process_results(tmp_path, world):
    out = tmp_path / "result.json"
    mp.start_processes(_worker, args=(world, str(tmp_path / "store"), str(out)), nprocs=world, join=True,
                       start_method="spawn")
    single = hubness_pr.json_safe(run_all(SINGLE))
    for rank in range(world):  # every rank holds the whole result
        ranked = json.loads(out.with_name(f"{out.name}.{rank}").read_text())
        for name in CASES:
            got, want = ranked[name], single[name]
            assert got["knn"][0] == want["knn"][0] and got["occ"] == want["occ"], name
            np.testing.assert_allclose(got["knn"][1], want["knn"][1], rtol=1e-15)
            for block in ("pr", "dc", "epr", "hubness"):
                assert got[block] == want[block], (name, block)
            np.testing.assert_allclose(np.array(got["realism"], dtype=float), want["realism"], rtol=1e-12)
            assert got["rarity"] == want["rarity"], name
        assert ranked["real_rarity"] == hubness_pr.json_safe(single["real_rarity"])


def test_shares_cover_every_item_once():
    for world in (1, 2, 3, 5):
        groups = [Group(rank=r, world=world) for r in range(world)]
        for count in (0, 1, 4, 17):
            items = sorted(i for g in groups for i in g.share(count))
            assert items == list(range(count))
            rows = [g.rows(count) for g in groups]
            assert [i for s in rows for i in range(s.start, s.stop)] == list(range(count))
            assert max(s.stop - s.start for s in rows) - min(s.stop - s.start for s in rows) <= 1
