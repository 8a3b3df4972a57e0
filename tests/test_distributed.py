"""Several processes (torch.distributed, Gloo on localhost) give the single process's results:
same neighbours, same decisions, values within float rounding; uneven shards, idle ranks, a set
smaller than the number of ranks."""

import numpy as np
import pytest
import torch

import hubness_pr
from hubness_pr.engine.distributed import Group
from tests import ranks

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
    results = {}
    for name in CASES:
        real, fake, options = data(name)
        ev = hubness_pr.evaluate(real=real, fake=fake, group=group, **options)
        graph = hubness_pr.nearest_neighbors(fake, options.get("k", 3), group=group)
        results[name] = summary(ev, graph)
        assert ev.params["processes"] == group.world
    results["real_rarity"] = hubness_pr.real_rarity_scores(real=data("uneven")[0], group=group).scores.tolist()
    return hubness_pr.json_safe(results)


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_give_the_single_process_results(tmp_path, world):
    single = ranks.single(run_all)
    for ranked in ranks.on_ranks(run_all, world, tmp_path):  # every rank holds the whole result
        for name in CASES:
            got, want = ranked[name], single[name]
            assert got["knn"][0] == want["knn"][0] and got["occ"] == want["occ"], name
            np.testing.assert_allclose(got["knn"][1], want["knn"][1], rtol=1e-15)
            for block in ("pr", "dc", "epr", "hubness"):
                assert got[block] == want[block], (name, block)
            np.testing.assert_allclose(np.array(got["realism"], dtype=float), want["realism"], rtol=1e-12)
            assert got["rarity"] == want["rarity"], name
        assert ranked["real_rarity"] == single["real_rarity"]


def test_shares_cover_every_item_once():
    for world in (1, 2, 3, 5):
        groups = [Group(rank=r, world=world) for r in range(world)]
        for count in (0, 1, 4, 17):
            items = sorted(i for g in groups for i in g.share(count))
            assert items == list(range(count))
            rows = [g.rows(count) for g in groups]
            assert [i for s in rows for i in range(s.start, s.stop)] == list(range(count))
            assert max(s.stop - s.start for s in rows) - min(s.stop - s.start for s in rows) <= 1
