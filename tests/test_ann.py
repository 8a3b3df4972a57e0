"""Approximate hub selection (--knn hnsw): the exact steps after selection equal the exact engine
given the same hubs; HNSW hubs agree with exact ones on clustered data; the run says it is
approximate and measures its index; faiss missing is one line."""
import json
import sys

import numpy as np
import pytest

from hubness_pr.reports import writers
import hubness_pr
from hubness_pr.engine.ann import HnswOptions, hnsw_neighbors, hnsw_select, k_occurrence, quality
from hubness_pr.commands.metrics import main
from hubness_pr.engine import hard_cases
from tests.cli_helpers import assert_one_line_error, call


def clustered(n, dim, seed, centres=12, drop=0):
    """Samples around a few centres (mode structure as in image features); ``drop`` centres left out."""
    rng = np.random.default_rng(100)
    c = rng.standard_normal((centres, dim)) * 3
    rng = np.random.default_rng(seed)
    which = rng.integers(drop, centres, n)
    return (c[which] + rng.standard_normal((n, dim))).astype(np.float32)


CASES = {
    "clustered": lambda: clustered(900, 16, 1),
    "collapsed": lambda: hard_cases.collapsed(1e-3)[1],
    "offset": lambda: hard_cases.offset(4000.0)[0],
    "duplicates": lambda: hard_cases.many_duplicates(),
    "ties": lambda: hard_cases.ulp_ties(),
    "grid": lambda: hard_cases.half_integer_grid()[0],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_neighbors_of_rows_equal_the_whole_graph(case, kernel_route):
    x = CASES[case]()
    rng = np.random.default_rng(3)
    for k in (1, 3, 5):
        graph = hubness_pr.nearest_neighbors(x, k, memory_budget=2**20)
        for count in (1, len(x) // 3, len(x)):
            rows = rng.choice(len(x), count, replace=False)
            idx, sq = hubness_pr.neighbors_of(x, rows, k, memory_budget=2**20)
            np.testing.assert_array_equal(sq, graph.sq_distances[rows], err_msg=f"{case} k={k} rows={count}")
            assert (idx != rows[:, None]).all()  # self excluded
            # the neighbours named are at the distances given (ties may name another sample)
            d = ((x[idx].astype(np.float64) - x[rows][:, None].astype(np.float64)) ** 2).sum(-1)
            np.testing.assert_allclose(d, sq, rtol=1e-9, atol=1e-300)


def test_neighbors_of_checks_its_rows():
    x = clustered(50, 4, 0)
    with pytest.raises(ValueError, match="distinct indices"):
        hubness_pr.neighbors_of(x, [1, 1], 3)
    with pytest.raises(ValueError, match="distinct indices"):
        hubness_pr.neighbors_of(x, [50], 3)
    assert hubness_pr.neighbors_of(x, [], 3)[1].shape == (0, 3)


@pytest.mark.parametrize("case", ["clustered", "collapsed", "duplicates", "offset"])
def test_given_hubs_give_the_exact_epr(case, kernel_route):
    """Everything after hub selection is the exact engine: injecting the exact hub sets reproduces
    the exact route's eP&R bit for bit, for several thresholds."""
    if case == "clustered":
        real, fake = clustered(700, 12, 1), clustered(600, 12, 2, drop=3)
    else:
        x = CASES[case]()
        real, fake = x, x[::-1].copy() * np.float32(1.0001)
    for k, t in ((3, 3), (3, 1), (5, 7)):
        exact = hubness_pr.evaluate(real=real, fake=fake, metrics=("pr", "epr"), k=k, hubs_k=t, memory_budget=2**20)
        masks = (exact.real_k_occurrence >= t, exact.fake_k_occurrence >= t)
        given = hubness_pr.evaluate(real=real, fake=fake, metrics=("epr",), k=k, hubs_k=t, hubs=masks,
                                 memory_budget=2**20)
        assert given.epr == exact.epr, (case, k, t)
        # the per-hub decisions too (False off the hubs), and they make up eP&R
        np.testing.assert_array_equal(given.fake_in_real_hub_balls, exact.fake_in_real_hub_balls)
        np.testing.assert_array_equal(given.real_in_fake_hub_balls, exact.real_in_fake_hub_balls)
        assert not exact.fake_in_real_hub_balls[~masks[1]].any()
        if masks[1].any():
            assert exact.fake_in_real_hub_balls[masks[1]].mean() == exact.epr.precision
        assert given.params["knn"] == {"method": "given"}


def test_hnsw_hub_selection_agrees_with_exact_on_clustered_data():
    """Stated bound: on clustered data (12 modes, 16-d, 3,000 samples) with the default index,
    recall@k >= 0.95 and the hub sets' Jaccard index >= 0.9; eP&R within 0.03 of the exact route."""
    real, fake = clustered(3000, 16, 1), clustered(2500, 16, 2, drop=2)
    k, t = 3, 3
    exact = hubness_pr.evaluate(real=real, fake=fake, metrics=("epr",), k=k, hubs_k=t)
    approx = hubness_pr.evaluate(real=real, fake=fake, metrics=("epr",), k=k, hubs_k=t, knn="hnsw")
    graph = hubness_pr.nearest_neighbors(real, k)
    found = hnsw_neighbors(real, k)
    recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(found, graph.indices)])
    assert recall >= 0.95
    ex_hubs, ap_hubs = graph.k_occurrence(k) >= t, k_occurrence(found, len(real), k) >= t
    assert (ex_hubs & ap_hubs).sum() / (ex_hubs | ap_hubs).sum() >= 0.9
    assert abs(approx.epr.precision - exact.epr.precision) <= 0.03
    assert abs(approx.epr.recall - exact.epr.recall) <= 0.03
    report = approx.params["knn"]
    assert report["method"] == "hnsw" and report["m"] == 16 and report["ef_search"] == 32
    for side in ("real", "fake"):
        assert report[side]["sample"] == 1000
        assert 0.95 <= report[side]["recall_at_k"] <= 1 and 0.95 <= report[side]["k_occurrence_agreement"] <= 1
    # measured on the sample, the index's recall is close to the true one
    assert abs(report["real"]["recall_at_k"] - recall) <= 0.03


def test_a_poor_index_is_measured_as_poor():
    """The quality check can fail: a crippled index (M=2, efSearch 4) on 64-d data scores lower, and
    exact lists score 1."""
    x = np.random.default_rng(0).standard_normal((2000, 64)).astype(np.float32)
    poor = HnswOptions(m=2, ef_construction=4, ef_search=4, sample=400)
    rough = quality(x, hnsw_neighbors(x, 3, poor), 3, 3, poor)
    assert rough["recall_at_k"] < 0.9 and rough["k_occurrence_agreement"] < 0.95
    exact = quality(x, hubness_pr.nearest_neighbors(x, 3).indices, 3, 3, poor)
    assert exact == {"sample": 400, "recall_at_k": 1.0, "k_occurrence_agreement": 1.0}


def test_min_recall_raises_ef_search_until_the_check_reaches_it():
    """A weak index (M=4, efSearch 4) on clustered data: with min_recall the search is repeated at
    doubled efSearch until the check's recall@k reaches it; the true recall of the lists returned
    (against the exact graph) rises with it; max_ef_search caps the loop, and min_recall=0 searches once."""
    x, k = clustered(3000, 16, 1), 3
    exact = hubness_pr.nearest_neighbors(x, k).indices

    def run(**options):
        o = HnswOptions(m=4, ef_construction=8, ef_search=4, sample=500, **options)
        return hnsw_select(x, k, o, lambda found: quality(x, found, k, k, o))

    found0, once = run(min_recall=0.0)
    assert once["ef_search_used"] == 4 and "tries" not in once and once["recall_at_k"] < 0.85
    found, raised = run(min_recall=0.85)
    efs = [t["ef_search"] for t in raised["tries"]]
    assert efs == [4 * 2 ** i for i in range(len(efs))] and len(efs) >= 2
    assert raised["ef_search_used"] == efs[-1] and raised["recall_at_k"] >= 0.85
    assert all(t["recall_at_k"] < 0.85 for t in raised["tries"][:-1])

    def true_recall(lists):
        return np.mean([len(set(a) & set(b)) / k for a, b in zip(lists, exact)])
    assert true_recall(found) > true_recall(found0) + 0.1
    _, capped = run(min_recall=0.999, max_ef_search=16)
    assert [t["ef_search"] for t in capped["tries"]] == [4, 8, 16] and capped["recall_at_k"] < 0.999
    with pytest.raises(ValueError, match="min_recall"):
        HnswOptions(min_recall=1.5)
    with pytest.raises(ValueError, match="sample > 0"):
        HnswOptions(min_recall=0.5, sample=0)


def test_cli_reports_a_raised_ef_search(files):
    proc = call(main, "real.npy", "fake.npy", "--knn", "hnsw", "--json", "out.json", "--hnsw_check", "300",
                "--hnsw_m", "2", "--hnsw_ef_construction", "4", "--hnsw_ef", "4", "--hnsw_min_recall", "0.97",
                "--hnsw_max_ef", "8")
    assert proc.returncode == 0, proc.stderr
    knn = json.loads((files / "out.json").read_text())["params"]["knn"]
    assert knn["min_recall"] == 0.97 and knn["max_ef_search"] == 8
    for side in ("real", "fake"):  # M=2 reaches nowhere near 0.97: both searches run, the cap stops them
        assert knn[side]["ef_search_used"] == 8 and knn[side]["recall_at_k"] < 0.97
        assert [t["ef_search"] for t in knn[side]["tries"]] == [4, 8]
    assert "efSearch=4, raised to 8 real, 8 fake for recall >= 0.97" in proc.stderr
    assert "even at efSearch 8" in proc.stderr and "knn.real.ef_search_used: 8" in proc.stdout
    assert_one_line_error(call(main, "real.npy", "fake.npy", "--knn", "hnsw", "--hnsw_min_recall", "1.5"),
                          "--hnsw_min_recall", "[0, 1]")


def test_hnsw_neighbors_exclude_self_with_duplicates():
    x = np.repeat(clustered(40, 3, 0), 5, axis=0)
    found = hnsw_neighbors(x, 3)
    assert found.shape == (200, 3) and (found != np.arange(200)[:, None]).all()
    assert (found >= 0).all() and k_occurrence(found, 200, 3).sum() == 600


def test_hnsw_refuses_the_metrics_that_need_every_neighbour():
    x = clustered(100, 4, 0)
    with pytest.raises(ValueError, match="metrics=\\('epr',\\)"):
        hubness_pr.evaluate(real=x, fake=x, knn="hnsw")
    with pytest.raises(ValueError, match="knn"):
        hubness_pr.evaluate(real=x, fake=x, metrics=("epr",), knn="annoy")
    with pytest.raises(ValueError, match="boolean masks"):
        hubness_pr.evaluate(real=x, fake=x, metrics=("epr",), hubs=(np.ones(3, bool), np.ones(100, bool)))


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("real.npy", clustered(1500, 8, 1))
    np.save("fake.npy", clustered(1200, 8, 2, drop=3))
    return tmp_path


def test_cli_says_it_is_approximate_and_records_the_check(files):
    proc = call(main, "real.npy", "fake.npy", "--knn", "hnsw", "--json", "out.json", "--hnsw_check", "300")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("precision: ") and lines[1].startswith("recall: ")
    assert any(line.startswith("knn: hnsw (approximate hub selection") for line in lines)
    assert "approximate k-NN" in proc.stderr and "on 300 sampled queries" in proc.stderr
    data = json.loads((files / "out.json").read_text())
    assert data["params"]["metrics"] == ["epr"] and set(data) >= {"epr"} and "pr" not in data
    knn = data["params"]["knn"]
    assert knn["method"] == "hnsw" and knn["real"]["sample"] == 300
    assert all(0 <= knn[s][q] <= 1 for s in ("real", "fake") for q in ("recall_at_k", "k_occurrence_agreement"))
    assert data["cache"]["real"]["status"] == "not used (--knn hnsw)"
    exact = call(main, "real.npy", "fake.npy", "--metrics", "epr", "--json", "exact.json")
    assert exact.returncode == 0 and "approximate" not in exact.stderr
    assert "knn" not in json.loads((files / "exact.json").read_text())["params"]


def test_cli_refuses_exact_metrics_with_hnsw(files):
    assert_one_line_error(call(main, "real.npy", "fake.npy", "--knn", "hnsw", "--metrics", "pr,epr"),
                          "--knn hnsw", "--metrics epr")


def test_faiss_missing_is_one_line_naming_the_extra(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss raises ImportError
    message = assert_one_line_error(call(main, "real.npy", "fake.npy", "--knn", "hnsw"), "faiss")
    assert "hubness-pr[ann]" in message
    assert not (files / "out.json").exists()


def test_torchrun_with_hnsw_equals_one_process(files):
    import os
    import subprocess
    from pathlib import Path

    from tests.cli_helpers import METRICS_SCRIPT
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(METRICS_SCRIPT),
           "real.npy", "fake.npy", "--knn", "hnsw", "--json", "two.json", "--memory_budget", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=files)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("approximate k-NN") == 1  # rank 0 alone
    assert call(main, "real.npy", "fake.npy", "--knn", "hnsw", "--json", "one.json", "--memory_budget", "1").returncode == 0
    two, one = (json.loads(Path(files / name).read_text()) for name in ("two.json", "one.json"))
    assert two["params"]["processes"] == 2 and two["epr"] == one["epr"]
    assert two["params"]["knn"]["real"] == one["params"]["knn"]["real"]


def test_compare_tells_approximate_runs_apart(files):
    for extra in (("--knn", "hnsw"), ("--metrics", "epr")):
        assert call(main, "real.npy", "fake.npy", "--log", "runs.jsonl", *extra).returncode == 0
    table = call(main, "compare", "runs.jsonl")
    assert table.returncode == 0, table.stderr
    header, first, second = table.stdout.splitlines()[:3]
    assert "knn" in header.split() and first.split()[header.split().index("knn")] == "hnsw"
    assert second.split()[header.split().index("knn")] == "exact"


def test_plot_and_gallery_say_the_hubs_are_approximate(files, monkeypatch):
    """The --plot figure and the gallery's sheets of a --knn hnsw run name the approximate selection:
    the figure's title (also each sheet's subtitle), the k-occurrence panel and the eP&R bars."""
    from hubness_pr.commands import metrics as command
    from tests.test_reports import figure_texts
    titles = []
    write_plot = writers.write_plot

    def recording(handle, evaluation, real_rarity=None, title=""):
        titles.append(title)
        write_plot(handle, evaluation, real_rarity, title)

    monkeypatch.setattr(writers, "write_plot", recording)
    proc = call(main, "real.npy", "fake.npy", "--knn", "hnsw", "--plot", "p.png", "--hnsw_check", "200")
    assert proc.returncode == 0, proc.stderr
    assert titles == ["fake.npy (1200 generated) vs real.npy (1500 real), k=3; hubs by approximate k-NN (HNSW)"]
    approx = hubness_pr.evaluate(real=np.load("real.npy"), fake=np.load("fake.npy"), metrics=("epr",), knn="hnsw",
                              hnsw=HnswOptions(sample=200))
    texts = figure_texts(monkeypatch, approx)
    assert "k-occurrence (k=3) in approximate k-NN graphs (HNSW)" in texts and "eP&R, hubs by HNSW" in texts
    exact = figure_texts(monkeypatch, hubness_pr.evaluate(real=np.load("real.npy"), fake=np.load("fake.npy"),
                                                       metrics=("epr",)))
    assert not any("HNSW" in t for t in exact) and "eP&R" in exact
