"""The real set's moments and real x real kernel sums (hubness_pr/engine/real_stats.py), given to
``evaluate(real_stats=...)`` and stored beside the k-NN summary (hubness_pr/io/summary.py): FD, exact
KID and CMMD of a new generated set then do no real x real work, with the same bits as a
recomputation; a damaged or mismatched stored file is refused with a warning and recomputed."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import hubness_pr
from hubness_pr.commands.metrics import main
from hubness_pr.engine import kernel_sums as ks
from hubness_pr.engine.context import RunContext
from hubness_pr.engine.real_stats import layout, real_route
from hubness_pr.errors import InputError
from hubness_pr.io import summary
from hubness_pr.io.summary import StatsKey, SummaryCache
from tests import ranks
from tests.cli_helpers import call
from tests.test_fd_kid import inception_like

REAL = inception_like(20, 260, 24)
FAKES = (inception_like(21, 240, 24, shift=0.1), inception_like(22, 260, 24, shift=0.2))
KEYS = ("value", "infinity", "std", "unbiased")


def real_layout(budget: int) -> dict:
    """The layout the metric command keys REAL's stored stats by, at this budget, in one CPU process."""
    return layout(len(REAL), 24, budget, 1, "cpu", real_route(RunContext(memory_budget=budget), len(REAL), 24))


def values(ev) -> dict:
    """Every number FD, KID and CMMD report, by metric and field."""
    return {name: {f: getattr(getattr(ev, name), f) for f in KEYS if hasattr(getattr(ev, name), f)}
            for name in ("fd", "kid", "cmmd") if getattr(ev, name) is not None}


def same(a: dict, b: dict) -> bool:
    """Bit for bit, NaN equal to NaN."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.parametrize("budget", [2**20, 2**28])
def test_given_real_stats_give_the_bits_of_a_recomputation(budget):
    opts = dict(metrics="fd,kid,cmmd", memory_budget=budget, fd_inf_points=4, device="cpu")
    first = hubness_pr.evaluate(real=REAL, fake=FAKES[0], **opts)
    stats = first.real_stats
    assert stats.moments is not None and set(stats.kernels) == {"poly3", "gauss"} and stats.n == len(REAL)
    for fake in FAKES:
        fresh = hubness_pr.evaluate(real=REAL, fake=fake, **opts)
        reused = hubness_pr.evaluate(real=REAL, fake=fake, real_stats=stats, **opts)
        assert same(values(reused), values(fresh)), (values(reused), values(fresh))
    # one metric at a time: what it reads is taken from a RealStats holding more
    for name in ("fd", "kid", "cmmd"):
        o = dict(opts, metrics=name)
        assert same(values(hubness_pr.evaluate(real=REAL, fake=FAKES[1], real_stats=stats, **o)),
                    values(hubness_pr.evaluate(real=REAL, fake=FAKES[1], **o)))
    # through the stored arrays (what the cache writes and reads back)
    key = StatsKey.of("d" * 64, len(REAL), REAL.shape[1], True, ("gauss", "poly3"),
                      real_layout(budget))
    back = summary.stats_from_arrays(summary.stats_arrays(stats, key), key)
    assert same(values(hubness_pr.evaluate(real=REAL, fake=FAKES[1], real_stats=back, **opts)),
                values(hubness_pr.evaluate(real=REAL, fake=FAKES[1], **opts)))


def test_given_real_sums_form_no_real_x_real_tile(monkeypatch):
    ctx = RunContext(device=torch.device("cpu"), memory_budget=2**20)
    x, y = (torch.from_numpy(a) for a in (REAL, FAKES[0]))
    real = ks.real_kernel_sums(x, ("poly3", "gauss"), ctx)
    want = ks.kernel_sums(x, y, ("poly3", "gauss"), ctx)
    tags = []
    add = ks.KernelGrid.add
    monkeypatch.setattr(ks.KernelGrid, "add", lambda self, *a, **k: (tags.append(self.tag), add(self, *a, **k)))
    got = ks.kernel_sums(x, y, ("poly3", "gauss"), ctx, real=real)
    assert tags and "xx" not in tags
    for name in ("poly3", "gauss"):
        for f in ("xx", "yy", "xy", "xx2", "yy2", "xy2"):
            assert getattr(got[name], f) == getattr(want[name], f)
        for f in ("xx_rows", "yy_rows", "xy_rows", "xy_cols"):
            assert np.array_equal(getattr(got[name], f), getattr(want[name], f))
    with pytest.raises(ValueError, match="do not fit"):
        ks.kernel_sums(x[:100], y, ("poly3",), ctx, real=real)


def test_kid_over_subsets_reads_no_real_stats():
    assert hubness_pr.real_stats_needs("kid", kid_subsets=5) == (False, ())
    assert hubness_pr.real_stats_needs("fd,kid,cmmd") == (True, ("gauss", "poly3"))
    assert hubness_pr.real_stats_needs("pr,dc") == (False, ())
    ev = hubness_pr.evaluate(real=REAL, fake=FAKES[0], metrics="kid", kid_subsets=3, kid_subset_size=100)
    assert ev.real_stats is None
    with pytest.raises(ValueError, match="real_stats"):
        hubness_pr.evaluate(real=REAL[:100], fake=FAKES[0], metrics="fd",
                            real_stats=hubness_pr.evaluate(real=REAL, fake=FAKES[0], metrics="fd").real_stats)


def _stats_and_arrays(budget=2**20):
    stats = hubness_pr.evaluate(real=REAL, fake=FAKES[0], metrics="fd,kid,cmmd", memory_budget=budget).real_stats
    key = StatsKey.of(summary.content_digest(REAL), len(REAL), REAL.shape[1], True, ("gauss", "poly3"),
                      real_layout(budget))
    return stats, key, summary.stats_arrays(stats, key)


def _reseal(arrays, key):
    names = [n for n in key.shapes() if n not in ("stats_key", "stats_checksum")]
    arrays["stats_checksum"] = np.asarray(summary._checksum(*(arrays[n] for n in names)))
    return arrays


def test_stored_stats_are_validated():
    stats, key, arrays = _stats_and_arrays()
    summary.stats_from_arrays(arrays, key)
    bad = dict(arrays, poly3_xx_rows=arrays["poly3_xx_rows"] * (1 + 1e-6))
    with pytest.raises(InputError, match="checksum"):
        summary.stats_from_arrays(bad, key)
    with pytest.raises(InputError, match="do not add up"):
        summary.stats_from_arrays(_reseal(dict(bad), key), key)
    cov = arrays["moments_cov"].copy()
    cov[0, 1] += 1.0
    with pytest.raises(InputError, match="not a covariance"):
        summary.stats_from_arrays(_reseal(dict(arrays, moments_cov=cov), key), key)
    root = arrays["moments_factor"] * 1.01
    with pytest.raises(InputError, match="stored factor"):
        summary.stats_from_arrays(_reseal(dict(arrays, moments_factor=root), key), key)
    nan = arrays["gauss_xx_rows"].copy()
    nan[3] = np.nan
    with pytest.raises(InputError, match="not finite"):
        summary.stats_from_arrays(_reseal(dict(arrays, gauss_xx_rows=nan), key), key)
    with pytest.raises(InputError, match="wrong shape"):
        summary.stats_from_arrays(_reseal(dict(arrays, gauss_xx_rows=nan[:-1]), key), key)
    with pytest.raises(InputError, match="missing"):
        summary.stats_from_arrays({k: v for k, v in arrays.items() if k != "moments_mean"}, key)
    other = StatsKey.of(key.digest, key.n, key.dim, True, ("gauss", "poly3"), real_layout(2**28))
    assert other.file_name() != key.file_name()
    with pytest.raises(InputError, match="layout differ"):
        summary.stats_from_arrays(arrays, other)


def test_the_cache_keeps_them_beside_the_knn_summary(tmp_path):
    stats, key, _ = _stats_and_arrays()
    cache = SummaryCache(tmp_path / "cache")
    with pytest.raises(hubness_pr.errors.CacheMiss):
        cache.lookup_stats(key)
    assert "saved to" in cache.store_stats(key, stats)
    got = cache.lookup_stats(key)
    assert got.stats is not None and "reused" in got.message
    assert np.array_equal(got.stats.moments.cov, stats.moments.cov)
    assert "factor" in vars(got.stats.moments)  # read back with them: FD computes no eigh for it
    assert np.array_equal(got.stats.moments.factor, stats.moments.factor)
    assert np.array_equal(got.stats.kernels["poly3"].xx_rows, stats.kernels["poly3"].xx_rows)
    # a k-NN summary in the same folder is untouched by them and valid without them
    graph = hubness_pr.nearest_neighbors(REAL, 5, exact_ks=(3, 5))
    gkey = summary.SummaryKey.of(REAL, 5, (3, 5))
    cache.store(gkey, graph)
    assert cache.lookup(gkey, REAL).graph is not None
    path = cache.folder / key.file_name()
    path.write_bytes(path.read_bytes()[:-40])  # truncated
    got = cache.lookup_stats(key)
    assert got.stats is None and "not used" in got.message and cache.lookup(gkey, REAL).graph is not None


# ---- the command ---------------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUBNESS_CACHE", str(tmp_path / "cache"))
    np.save("real.npy", REAL)
    for i, fake in enumerate(FAKES):
        np.save(f"fake{i}.npy", fake)
    return tmp_path


ARGS = ("--metrics", "fd,kid,cmmd,pr", "--fd_inf_points", "4", "--memory_budget", "1", "--device", "cpu")


def command(fake, out, *more):
    result = call(main, "real.npy", fake, *ARGS, "--json", out, *more)
    assert result.returncode == 0, result.stderr
    document = json.loads(Path(out).read_text())
    return result, {name: document[name] for name in ("fd", "kid", "cmmd", "pr")}, document["cache"]


def test_a_second_run_reuses_the_real_stats_with_identical_values(files):
    _, plain, cache = command("fake1.npy", "plain.json", "--no_cache")
    assert cache["real_stats"] == {"status": "off"}
    _, first, cache = command("fake0.npy", "a.json")
    assert cache["real_stats"]["status"] == "computed" and Path(cache["real_stats"]["path"]).is_file()
    assert cache["real"]["status"] == "computed"
    result, second, cache = command("fake1.npy", "b.json")
    assert cache["real_stats"]["status"] == "reused" and cache["real"]["status"] == "reused", result.stderr
    assert second == plain
    assert "warn" not in result.stderr.lower(), result.stderr


def test_the_first_cached_run_takes_the_real_sums_from_its_real_knn_pass(files, monkeypatch):
    """With the cache on, the command computes the real k-NN graph itself (to store it): the real x real
    kernel sums ride that pass; no grid gets a pass of its own beside the k-NN metrics."""
    _, plain, _ = command("fake0.npy", "plain.json", "--no_cache")
    own = []
    grid_pass = ks.grid_pass
    monkeypatch.setattr(ks, "grid_pass", lambda grid, *a, **k: (own.append(grid.tag), grid_pass(grid, *a, **k)))
    _, first, cache = command("fake0.npy", "a.json")
    assert cache["real"]["status"] == "computed" and cache["real_stats"]["status"] == "computed"
    assert own == [] and first == plain


def test_a_damaged_stored_file_is_refused_with_a_warning(files):
    _, plain, _ = command("fake1.npy", "plain.json", "--no_cache")
    _, _, cache = command("fake0.npy", "a.json")
    path = Path(cache["real_stats"]["path"])
    with np.load(path) as stored:
        arrays = dict(stored)
    arrays["gauss_xx"] = arrays["gauss_xx"] + 1.0  # edited, checksum left as it was
    path.unlink()
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    path.chmod(0o600)
    result, got, cache = command("fake1.npy", "b.json")
    lines = [line for line in result.stderr.splitlines() if "real statistics" in line and "not used" in line]
    assert len(lines) == 1 and "checksum" in lines[0], result.stderr
    assert cache["real_stats"]["status"] == "recomputed (the stored one was not valid)"
    assert got == plain
    result, got, cache = command("fake1.npy", "c.json")  # the recomputed ones were stored again
    assert cache["real_stats"]["status"] == "reused" and got == plain


def test_another_real_set_or_layout_does_not_use_them(files):
    _, _, cache = command("fake0.npy", "a.json")
    path = Path(cache["real_stats"]["path"])
    _, _, other = command("fake0.npy", "b.json", "--memory_budget", "64")  # other tiles: another key
    assert other["real_stats"]["status"] == "computed" and other["real_stats"]["path"] != str(path)
    # another real set's statistics planted under this key's name: refused by the key inside
    np.save("real2.npy", REAL[::-1].copy())
    result = call(main, "real2.npy", "fake0.npy", *ARGS, "--json", "c.json")
    moved = Path(json.loads(Path("c.json").read_text())["cache"]["real_stats"]["path"])
    path.replace(moved)
    result, _, cache = command("fake0.npy", "d.json")  # the real set's own file is gone: computed
    assert cache["real_stats"]["status"] == "computed"
    result = call(main, "real2.npy", "fake0.npy", *ARGS, "--json", "e.json")
    assert result.returncode == 0, result.stderr
    assert json.loads(Path("e.json").read_text())["cache"]["real_stats"]["status"] == \
        "recomputed (the stored one was not valid)"
    assert "made for other inputs (digest differ)" in result.stderr, result.stderr


# ---- two Gloo ranks -------------------------------------------------------------------------------

def _ranked(group):
    opts = dict(metrics="fd,kid,cmmd", group=group, memory_budget=2**20, device="cpu")
    stats = hubness_pr.evaluate(real=REAL, fake=FAKES[0], **opts).real_stats
    fresh = hubness_pr.evaluate(real=REAL, fake=FAKES[1], **opts)
    reused = hubness_pr.evaluate(real=REAL, fake=FAKES[1], real_stats=stats, **opts)
    return {"same": same(values(fresh), values(reused)), "mean": stats.moments.mean.tolist(),
            "cov": stats.moments.cov.tolist(),
            **{f"{k}_{f}": np.asarray(getattr(stats.kernels[k], f)).tolist()
               for k in ("poly3", "gauss") for f in ("xx", "xx2", "xx_rows")}}


def test_two_gloo_ranks_compute_one_process_real_stats(tmp_path):
    single = ranks.single(_ranked)
    assert single["same"]
    for rank, ranked in enumerate(ranks.on_ranks(_ranked, 2, tmp_path)):
        assert ranked.pop("same")  # reuse under two ranks: the bits of two ranks' recomputation
        for name, value in ranked.items():
            np.testing.assert_allclose(np.asarray(value), np.asarray(single[name]), rtol=1e-12, atol=1e-12,
                                       err_msg=f"{rank} {name}")
