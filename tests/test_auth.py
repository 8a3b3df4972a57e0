"""Memorisation metrics: each fake's two nearest reals (hubness_pr.engine.nearest), AuthPct and d1/d2
('auth'), C_T ('ct'). Against a float64 brute force written here (random data, exact ties on integer
grids, duplicates, a large common offset; both CPU routes, several memory budgets, two Gloo ranks) and
against dgm-eval's procedure run on the same features (AuthPct's float32 ``torch.cdist`` and ``<``;
C_T's PCA to 64 components, 3 k-means cells, in-cell Mann-Whitney Z and tau = 20 / M, seeded).

The reference code (layer6ai-labs/dgm-eval, MIT) is not copied here: tests/reference_dgm_eval_procedure.py
follows its steps in code of our own. Its equality with dgm-eval's code itself was checked when that
module replaced a copy of the code: the same values to the bit (largest difference 0.0) for AuthPct on
30 pairs (random, duplicates, integer grids, unequal sizes from 2 x 1 to 1,200 x 900, a common offset,
the hard cases of hubness_pr.engine.hard_cases) and for C_T on 27 triples (dim 2 to 200, with and
without PCA, copying and not, integer grids, duplicates, cells left out by tau, no cell kept, seeds 0
to 3)."""
import csv
import os

import numpy as np
import pytest

import hubness_pr
from hubness_pr.engine import hard_cases
from hubness_pr.errors import InputError
from tests import oracle, ranks
from tests import reference_dgm_eval_procedure as ref
from tests.cases import grid_sets  # a small integer grid: many exact ties among the nearest reals


def brute_force(real, fake, copy_ratio=0.5):
    """(nearest two indices (M, 2), their squared distances, authentic flags, d1/d2) from the full
    float64 distance matrix, ties by the lowest real index."""
    d = oracle.sq_dists(real, fake).T                     # (M, N)
    n = d.shape[1]
    order = np.lexsort((np.broadcast_to(np.arange(n), d.shape), d), axis=1)[:, :2]
    sq = np.take_along_axis(d, order, axis=1)
    r1 = oracle.sq_radii(real, 1)                          # each real's nearest other real (self by index)
    authentic = r1[order[:, 0]] < sq[:, 0]
    d1, d2 = np.sqrt(sq[:, 0]), np.sqrt(sq[:, 1])
    ratio = np.where(d2 > 0, d1 / np.where(d2 > 0, d2, 1), 0.0)
    return order, sq, authentic, ratio


def random_sets(seed, n_real, n_fake, dim, offset=0.0):
    rng = np.random.default_rng(seed)
    real = (rng.standard_normal((n_real, dim)) + offset).astype(np.float32)
    fake = (rng.standard_normal((n_fake, dim)) * 1.1 + offset).astype(np.float32)
    fake[: n_fake // 4] = real[: n_fake // 4] + np.float32(0.01) * rng.standard_normal((n_fake // 4, dim)).astype(np.float32)
    return real, fake


def duplicate_sets(seed, n_real, n_fake, dim):
    """Exact copies of reals among the fakes, and repeated reals (r1 = 0, d1 = d2 = 0)."""
    real, fake = random_sets(seed, n_real, n_fake, dim)
    real[10:20] = real[0]
    fake[:5] = real[0]
    fake[5:40] = real[30:65]
    return real, fake


CASES = {
    "random": lambda: random_sets(0, 260, 230, 12),
    "grid": lambda: grid_sets(1, 240, 220, 3),
    "duplicates": lambda: duplicate_sets(2, 200, 180, 6),
    "offset": lambda: random_sets(3, 150, 140, 10, offset=1000.0),
}


def check(ev, real, fake):
    idx, sq, authentic, ratio = brute_force(real, fake)
    a = ev.auth
    assert np.array_equal(a.nearest_real, idx[:, 0]) and np.array_equal(a.second_real, idx[:, 1])
    # the same exact pairs; the float64 sums differ from numpy's order by rounding only
    np.testing.assert_allclose(a.nearest_real_distance, np.sqrt(sq[:, 0]), rtol=1e-13, atol=0)
    np.testing.assert_allclose(a.second_real_distance, np.sqrt(sq[:, 1]), rtol=1e-13, atol=0)
    assert np.array_equal(a.authentic, authentic)
    np.testing.assert_allclose(a.ratio_d1_d2, ratio, rtol=1e-12, atol=0)
    assert a.authpct == 100 * np.mean(authentic)
    assert a.copy_count == int((ratio < 0.5).sum())


@pytest.mark.parametrize("case", sorted(CASES))
def test_equals_a_float64_brute_force_on_both_routes(case, kernel_route):
    real, fake = CASES[case]()
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("auth",), route=kernel_route)
    check(ev, real, fake)
    if case == "grid":  # integer coordinates: the sums are exact, so are the distances
        assert np.array_equal(ev.auth.nearest_real_distance, np.sqrt(brute_force(real, fake)[1][:, 0]))


@pytest.mark.parametrize("budget", [2**20, 3 * 2**20, 256 * 2**20])
def test_equals_the_brute_force_whatever_the_tiles(budget, kernel_route):
    """A 1 MiB budget cuts the 700 x 64 pass into several tiles."""
    rng = np.random.default_rng(7)
    real = (np.round(rng.standard_normal((700, 64)) * 2) / 2).astype(np.float32)  # ties too
    fake = (np.round(rng.standard_normal((650, 64)) * 2) / 2 + 0.5).astype(np.float32)
    fake[:100] = real[200:300]
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("auth", "pr"), memory_budget=budget, route=kernel_route)
    check(ev, real, fake)


def test_ties_go_to_the_lowest_index():
    real = np.array([[1, 0], [0, 1], [-1, 0], [0, -1], [5, 5]], dtype=np.float32)
    fake = np.array([[0, 0], [0.5, 0.5], [5, 5]], dtype=np.float32)
    a = hubness_pr.evaluate(real=real, fake=fake, metrics=("auth",)).auth
    assert a.nearest_real.tolist() == [0, 0, 4] and a.second_real.tolist() == [1, 1, 0]
    assert a.nearest_real_distance.tolist() == [1.0, np.sqrt(0.5), 0.0]
    # the fake on real 4 (whose nearest other real is farther) is not authentic; the others are not
    # either: real 0's nearest other real is at sqrt(2) > 1
    assert a.authentic.tolist() == [False, False, False] and a.ratio_d1_d2[0] == 1.0


@pytest.mark.parametrize("seed, n_real, n_fake, dim", [(0, 80, 70, 5), (1, 150, 120, 16), (2, 200, 180, 32)])
def test_authpct_equals_dgm_eval(seed, n_real, n_fake, dim):
    real, fake = random_sets(seed, n_real, n_fake, dim)
    ours = hubness_pr.evaluate(real=real, fake=fake, metrics=("auth",)).auth.authpct
    assert ours == pytest.approx(ref.authpct(real, fake), abs=1e-4)  # theirs: a float32 percentage
    assert 0 < ours < 100


def test_copies_are_caught():
    """Noisy copies of reals: not authentic, d1/d2 small; a fresh sample of the same distribution: the
    ratio is near 1 and few are flagged."""
    rng = np.random.default_rng(5)
    real = rng.standard_normal((500, 32)).astype(np.float32)
    fresh = rng.standard_normal((300, 32)).astype(np.float32)
    copies = real[:300] + np.float32(0.05) * rng.standard_normal((300, 32)).astype(np.float32)
    a_fresh = hubness_pr.evaluate(real=real, fake=fresh, metrics=("auth",)).auth
    a_copy = hubness_pr.evaluate(real=real, fake=copies, metrics=("auth",)).auth
    assert a_fresh.authpct > 60 and a_copy.authpct == 0
    assert a_copy.copy_fraction == 1 and a_fresh.copy_fraction < 0.02
    assert a_fresh.ratio_quantiles["q50"] > 0.85 and a_copy.ratio_quantiles["q95"] < 0.1
    assert np.array_equal(a_copy.nearest_real, np.arange(300))


def test_options_and_errors():
    real, fake = CASES["random"]()
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("auth",), copy_ratio=0.9)
    assert ev.params["copy_ratio"] == 0.9
    assert ev.auth.copy_count == int((brute_force(real, fake)[3] < 0.9).sum())
    block = hubness_pr.to_dict(ev)["auth"]
    assert {"authpct", "copy_count", "copy_fraction", "ratio_quantiles"} <= set(block)
    assert "nearest_real" not in block  # per-sample arrays stay out of the JSON block
    with pytest.raises(InputError, match="'copy_ratio' parameter of evaluate"):
        hubness_pr.evaluate(real=real, fake=fake, metrics=("auth",), copy_ratio=0)
    with pytest.raises(InputError, match="needs held-out real features"):
        hubness_pr.evaluate(real=real, fake=fake, metrics=("ct",))
    with pytest.raises(InputError, match="different dimensions"):
        hubness_pr.evaluate(real=real, fake=fake, metrics=("ct",), real_test=real[:, :3])
    assert "auth" not in hubness_pr.DEFAULT_METRICS and "ct" not in hubness_pr.DEFAULT_METRICS


@pytest.mark.parametrize("dim", [8, 80])  # 80: dgm-eval's PCA to 64 components first
@pytest.mark.parametrize("copying", [False, True])
def test_ct_equals_dgm_eval(dim, copying):
    rng = np.random.default_rng(dim)
    centres = rng.standard_normal((3, dim)) * 4
    def draw(n):
        return (centres[rng.integers(0, 3, n)] + rng.standard_normal((n, dim))).astype(np.float32)
    train, test, fake = draw(300), draw(200), draw(250)
    if copying:
        fake[:200] = train[:200] + np.float32(0.01) * rng.standard_normal((200, dim)).astype(np.float32)
    want = ref.ct_score(train, test, fake, seed=0)  # PCA and k-means seeded as the toolkit's ct_seed
    ev = hubness_pr.evaluate(real=train, fake=fake, metrics=("ct",), real_test=test)
    assert ev.ct.value == pytest.approx(want, rel=1e-9, abs=1e-9)
    assert ev.params["ct_seed"] == 0 and ev.params["n_real_test"] == 200
    assert (ev.ct.value < -3) == copying


def test_ct_equals_dgm_eval_where_tau_leaves_a_cell_out():
    """Three well-separated clusters, each one k-means cell: 190, 40 and exactly 20 of the 250 fakes.
    tau = 20 / M keeps a cell holding *more* than 20 fakes: two cells enter C_T, the third does not."""
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((3, 8)) * 4
    def draw(counts):
        return (np.repeat(centres, counts, axis=0) + rng.standard_normal((sum(counts), 8))).astype(np.float32)
    train, test, fake = draw([100, 100, 100]), draw([70, 70, 60]), draw([190, 40, 20])
    want = ref.ct_score(train, test, fake, seed=0)
    ct = hubness_pr.evaluate(real=train, fake=fake, metrics=("ct",), real_test=test).ct
    assert ct.value == pytest.approx(want, rel=1e-9, abs=1e-9)
    assert ct.cells_used == 2 and int(np.isnan(ct.cell_z).sum()) == 1


def test_ct_refuses_an_empty_cell():
    rng = np.random.default_rng(3)
    train = np.concatenate([rng.standard_normal((50, 4)) + 20 * c for c in range(3)]).astype(np.float32)
    test = train[:30] + 0.1  # all in one cell
    with pytest.raises(InputError, match="holds no held-out real sample"):
        hubness_pr.evaluate(real=train, fake=train[::2] + 0.5, metrics=("ct",), real_test=test)


def _ranked(group):
    out = {}
    for name in sorted(CASES):
        real, fake = CASES[name]()
        a = hubness_pr.evaluate(real=real, fake=fake, metrics=("auth",), group=group, memory_budget=2**20).auth
        out[name] = [a.nearest_real.tolist(), a.second_real.tolist(), a.nearest_real_distance.tolist(),
                     a.second_real_distance.tolist(), a.authpct]
    return out


def test_two_gloo_ranks_give_one_process_and_the_brute_force(tmp_path):
    single = ranks.single(_ranked)
    for rank, ranked in enumerate(ranks.on_ranks(_ranked, 2, tmp_path)):
        for name in CASES:
            assert ranked[name] == single[name], (rank, name)
            real, fake = CASES[name]()
            idx, _, authentic, _ = brute_force(real, fake)
            assert ranked[name][0] == idx[:, 0].tolist() and ranked[name][1] == idx[:, 1].tolist()
            assert ranked[name][4] == 100 * np.mean(authentic)


def test_the_command_prints_json_and_per_sample_columns(tmp_path):
    import csv
    import json

    from hubness_pr.commands.metrics import main
    from tests.cli_helpers import call

    real, fake = CASES["duplicates"]()
    rng = np.random.default_rng(9)
    test = rng.standard_normal((150, real.shape[1])).astype(np.float32)
    for name, x in (("real", real), ("fake", fake), ("test", test)):
        np.save(tmp_path / f"{name}.npy", x)
    proc = call(main, tmp_path / "real.npy", tmp_path / "fake.npy", "--metrics", "auth,ct,pr", "--no-cache",
                "--real_test", tmp_path / "test.npy", "--copy_ratio", "0.3", "--json", tmp_path / "out.json",
                "--per_sample", tmp_path / "s.csv")
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    idx, sq, authentic, ratio = brute_force(real, fake)
    assert float(lines["auth.authpct"]) == pytest.approx(100 * authentic.mean(), abs=1e-3)
    assert int(lines["auth.copy_count"]) == int((ratio < 0.3).sum()) and "ct.value" in lines
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["params"]["copy_ratio"] == 0.3 and data["params"]["n_real_test"] == 150
    assert data["ct"]["value"] == hubness_pr.evaluate(real=real, fake=fake, metrics="ct", real_test=test).ct.value
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert [int(r["nearest_real"]) for r in rows] == idx[:, 0].tolist()
    np.testing.assert_allclose([float(r["nearest_real_distance"]) for r in rows], np.sqrt(sq[:, 0]), rtol=1e-13)
    np.testing.assert_allclose([float(r["ratio_d1_d2"]) for r in rows], ratio, rtol=1e-12)
    missing = call(main, tmp_path / "real.npy", tmp_path / "fake.npy", "--metrics", "ct", "--no-cache")
    assert missing.returncode == 1 and "--real_test" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


def test_closest_pairs_sheet(tmp_path, monkeypatch):
    """--gallery with auth: closest_pairs.png shows the generated images nearest to a real image, each
    beside that real image, and gallery.csv lists both with the pair's distance."""
    from PIL import Image

    from hubness_pr.commands.metrics import main
    from hubness_pr.reports import gallery
    from tests.cli_helpers import call
    from tests.test_gallery import colour, save_features, write_images

    rng = np.random.default_rng(4)
    real = rng.standard_normal((120, 4)).astype(np.float32)
    fake = rng.standard_normal((100, 4)).astype(np.float32)
    fake[[7, 50, 90]] = real[[3, 60, 100]] + np.float32(1e-3) * np.arange(1, 4, dtype=np.float32)[:, None]
    save_features(tmp_path / "real.npz", real, write_images(tmp_path / "r", "real", 120),
                  {"kind": "folder", "root": str(tmp_path / "r"), "count": 120})
    save_features(tmp_path / "fake.npz", fake, write_images(tmp_path / "f", "fake", 100),
                  {"kind": "folder", "root": str(tmp_path / "f"), "count": 100})
    monkeypatch.chdir(tmp_path)
    n = 6
    proc = call(main, "real.npz", "fake.npz", "--metrics", "auth", "--gallery", "g", "--gallery_n", n, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path / "g")) == ["closest_pairs.png", "gallery.csv"]
    idx, sq, _, _ = brute_force(real, fake)
    order = np.argsort(sq[:, 0], kind="stable")[: n // 2]
    assert order.tolist() == [7, 50, 90]
    with open(tmp_path / "g" / "gallery.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["sheet"] == "closest_pairs"]
    assert [(r["rank"], r["set"], int(r["index"])) for r in rows] == [
        (str(rank + 1), side, int(i)) for rank, j in enumerate(order) for side, i in (("fake", j), ("real", idx[j, 0]))]
    np.testing.assert_allclose([float(r["score"]) for r in rows[::2]], np.sqrt(sq[order, 0]), rtol=1e-12)
    with Image.open(tmp_path / "g" / "closest_pairs.png") as sheet:
        assert sheet.size == gallery.sheet_size(n)
        sheet = sheet.convert("RGB")
        tiles = [(side, i) for j in order for side, i in (("fake", j), ("real", idx[j, 0]))]
        for rank, (side, i) in enumerate(tiles):
            x = gallery.PAD + rank * (gallery.THUMB + gallery.PAD) + gallery.THUMB // 2
            assert sheet.getpixel((x, gallery.HEADER + gallery.THUMB // 2)) == colour(side, int(i)), rank


@pytest.mark.parametrize("case", sorted(hard_cases.all_cases()))
def test_the_inputs_that_break_float32_engines(case, kernel_route):
    """Collapsed sets, large offsets, power-of-two scales, exact and one-ulp ties, many duplicates: the
    screen alone would pick the wrong neighbours (the band is what makes these pass)."""
    real, fake, _ = hard_cases.all_cases()[case]
    if len(real) < 2:
        pytest.skip("needs two reals")
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("auth",), route=kernel_route, memory_budget=2**20)
    idx, sq, authentic, _ = brute_force(real, fake)
    assert np.array_equal(ev.auth.nearest_real, idx[:, 0]) and np.array_equal(ev.auth.second_real, idx[:, 1]), case
    np.testing.assert_allclose(ev.auth.nearest_real_distance, np.sqrt(sq[:, 0]), rtol=1e-12, atol=0)
    assert np.array_equal(ev.auth.authentic, authentic), case


def test_memory_mapped_inputs_of_another_dtype(tmp_path, kernel_route):
    """Features read from .npy files block by block (float64 on disk, a common offset): the same nearest
    reals, distances and C_T as the arrays in memory."""
    rng = np.random.default_rng(0)
    real = rng.standard_normal((300, 70)) + 50
    fake = (rng.standard_normal((200, 70)) + 50).astype(np.float32)
    test = (rng.standard_normal((150, 70)) + 50).astype(np.float32)
    np.save(tmp_path / "r.npy", real)
    np.save(tmp_path / "f.npy", fake)
    mapped = hubness_pr.evaluate(real=np.load(tmp_path / "r.npy", mmap_mode="r"), fake=np.load(tmp_path / "f.npy", mmap_mode="r"),
                                 metrics="auth,ct", real_test=test, route=kernel_route, memory_budget=2**20)
    held = hubness_pr.evaluate(real=real.astype(np.float32), fake=fake, metrics="auth,ct", real_test=test,
                               route=kernel_route)
    assert np.array_equal(mapped.auth.nearest_real, held.auth.nearest_real)
    assert np.array_equal(mapped.auth.nearest_real_distance, held.auth.nearest_real_distance)
    assert mapped.ct.value == held.ct.value
