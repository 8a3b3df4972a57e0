"""Uncertainty and reference points of the metrics (docs/definitions.md, "Standard errors" and
"Expected values"): the conditional standard errors against a brute force from the per-sample CSV
and the oracle's per-sample values, the expected values against direct simulations."""
import csv
import json
import math

import numpy as np
import pytest

import hubness_pr
from hubness_pr.commands.metrics import main
from hubness_pr.metrics import expected
from tests import oracle
from tests.cli_helpers import call
from tests.test_reports import random_pair


def brute_se(values) -> float:
    """The standard error of a mean, written out: sqrt(sum (v - mean)^2 / (n - 1)) / sqrt(n)."""
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    return math.sqrt(((v - v.sum() / n) ** 2).sum() / (n - 1)) / math.sqrt(n)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("se")
    real, fake = random_pair(11, 90, 80, 6, 1.2)
    np.save(tmp / "real.npy", real)
    np.save(tmp / "fake.npy", fake)
    proc = call(main, tmp / "real.npy", tmp / "fake.npy", "--json", tmp / "out.json", "--per_sample",
                tmp / "fake.csv", "--no_cache", "-v")
    assert proc.returncode == 0, proc.stderr
    with open(tmp / "fake.csv") as handle:
        rows = list(csv.DictReader(handle))
    return real, fake, json.loads((tmp / "out.json").read_text()), rows, proc.stdout


def test_standard_errors_equal_a_brute_force_from_the_per_sample_values(run):
    real, fake, data, rows, _ = run
    ref = oracle.all_metrics(real, fake)
    column = {name: [row[name] for row in rows] for name in rows[0]}
    inside = [int(v) for v in column["in_real_manifold"]]
    assert data["pr"]["precision_se"] == pytest.approx(brute_se(inside), rel=1e-12)
    p = np.mean(inside)
    assert data["pr"]["precision_se"] == pytest.approx(math.sqrt(p * (1 - p) / (len(inside) - 1)), rel=1e-12)
    assert data["dc"]["density_se"] == pytest.approx(brute_se([float(v) for v in column["density"]]), rel=1e-12)
    realism = [float(v) for v in column["realism"]]
    assert data["realism"]["mean_se"] == pytest.approx(brute_se(realism), rel=1e-12)
    rarity = [float(v) for v in column["rarity"] if v != ""]
    assert data["rarity"]["mean_se"] == pytest.approx(brute_se(rarity), rel=1e-12)
    assert data["rarity"]["fraction_inside_se"] == pytest.approx(
        brute_se([v != "" for v in column["rarity"]]), rel=1e-12)
    # over the real samples (not in the CSV): recall and coverage from the oracle's distances
    d = oracle.sq_dists(real, fake)
    recall_flags = (d <= oracle.sq_radii(fake, 3)[None, :]).any(axis=1)
    covered = d.min(axis=1) < oracle.sq_radii(real, 5)
    assert data["pr"]["recall_se"] == pytest.approx(brute_se(recall_flags), rel=1e-12)
    assert data["dc"]["coverage_se"] == pytest.approx(brute_se(covered), rel=1e-12)
    assert data["pr"]["recall"] == pytest.approx(ref["recall"])
    # eP&R's over its hubs
    hub_f, hub_r = ref["occ_fake"] >= 3, ref["occ_real"] >= 3
    hub_inside = (d[np.ix_(hub_r, hub_f)] <= oracle.sq_radii(real, 3)[hub_r][:, None]).any(axis=0)
    assert data["epr"]["precision_se"] == pytest.approx(brute_se(hub_inside), rel=1e-12)


def test_standard_errors_are_printed_beside_their_values(run):
    *_, stdout = run
    names = [line.split(":")[0] for line in stdout.splitlines()]
    for name in ("pr.precision", "pr.recall", "dc.density", "dc.coverage", "epr.precision_se", "realism.mean",
                 "rarity.fraction_inside"):
        se = name if name.endswith("_se") else f"{name}_se"
        assert se in names
        if se != name:
            assert names.index(se) == names.index(name) + 1


def test_the_run_reports_the_expected_values_under_v_and_in_the_json(run):
    real, fake, data, _, stdout = run
    n, m = len(real), len(fake)
    assert data["dc"]["expected"] == {"density": 1.0, "coverage": pytest.approx(expected.expected_coverage(n, m, 5))}
    p, r, draws = expected.simulated_precision_recall(n, m, 3, evaluate=hubness_pr.evaluate)
    assert data["pr"]["expected"] == {"precision": p, "recall": r}
    assert data["params"]["expected"]["pr"] == {"method": "simulation", "distribution": "standard Gaussian",
                                                "dim": expected.SIMULATION_DIM, "draws": draws, "seed": 0}
    assert f"pr.expected.precision: {p:.6f}" in stdout.splitlines()
    assert "dc.expected.density: 1.000000" in stdout.splitlines()


def test_expected_values_only_where_shown(tmp_path):
    real, fake = random_pair(12, 40, 40, 4, 1.0)
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    plain = call(main, tmp_path / "real.npy", tmp_path / "fake.npy", "--metrics", "dc")
    assert plain.returncode == 0 and "expected" not in plain.stdout
    off = call(main, tmp_path / "real.npy", tmp_path / "fake.npy", "--metrics", "dc", "--json", tmp_path / "a.json",
               "--no_expected")
    assert off.returncode == 0 and "expected" not in json.loads((tmp_path / "a.json").read_text())["dc"]
    assert "expected" not in hubness_pr.evaluate(real=real, fake=fake, metrics="dc").params


def test_expected_coverage_and_density_against_a_direct_simulation():
    """Two samples of one distribution, many draws: the mean coverage equals the closed form within
    four standard errors of the simulation (and density has mean 1); a wrong role of N and M, or
    k - 1 factors instead of k, is off by many more."""
    n, m, k, draws = 30, 20, 3, 600
    rng = np.random.default_rng(5)
    coverage, density = [], []
    for _ in range(draws):
        real, fake = rng.standard_normal((n, 3)), rng.standard_normal((m, 3))
        d = oracle.sq_dists(real, fake)
        r = np.sort(oracle.sq_dists(real, real), axis=1)[:, k]  # k-th neighbour, self (distance 0) first
        coverage.append(np.mean(d.min(axis=1) < r))
        density.append((d < r[:, None]).sum() / (k * m))
    se = np.std(coverage, ddof=1) / math.sqrt(draws)
    formula = expected.expected_coverage(n, m, k)
    assert abs(np.mean(coverage) - formula) < 4 * se
    assert abs(np.mean(coverage) - expected.expected_coverage(m, n, k)) > 8 * se  # the roles matter here
    assert abs(np.mean(density) - 1.0) < 4 * np.std(density, ddof=1) / math.sqrt(draws)
    assert expected.expected_coverage(10**6, 10**6, 5) == pytest.approx(1 - 2**-5, abs=1e-5)  # N = M: 1 - 2^-k


def test_expected_precision_recall_against_a_direct_simulation():
    """The cached simulation equals an independent brute-force simulation (other seeds, the oracle)
    within four standard errors of the two."""
    n, m, k, dim = 60, 40, 3, expected.SIMULATION_DIM
    p, r, draws = expected.simulated_precision_recall(n, m, k, evaluate=hubness_pr.evaluate)
    assert draws == expected.simulation_draws(n, m) == 10
    rng = np.random.default_rng(99)
    values = []
    for _ in range(40):
        real, fake = rng.standard_normal((n, dim)), rng.standard_normal((m, dim))
        ref = oracle.all_metrics(real, fake, k=k)
        values.append((ref["precision"], ref["recall"]))
    values = np.array(values)
    sim_p, sim_r = values.mean(axis=0)
    se_p, se_r = values.std(axis=0, ddof=1) / math.sqrt(len(values))
    assert abs(p - sim_p) < 4 * se_p * math.sqrt(1 + len(values) / draws)
    assert abs(r - sim_r) < 4 * se_r * math.sqrt(1 + len(values) / draws)
    again = expected.simulated_precision_recall(n, m, k, evaluate=hubness_pr.evaluate)
    assert again == (p, r, draws)  # cached: the same numbers


def test_splits_equal_separate_runs_on_the_subsets(tmp_path):
    """--splits S: each split's values are those of evaluate() on the documented subsets (disjoint,
    without replacement, n // S each); mean and standard error over them; the real splits' k-NN
    graphs are stored in the cache and reused by the next run, with the same numbers."""
    real, fake = random_pair(13, 130, 100, 5, 1.1)
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    args = [tmp_path / "real.npy", tmp_path / "fake.npy", "--splits", "3", "--splits_seed", "7", "--cache_dir",
            tmp_path / "cache", "--metrics", "pr,dc,rarity"]
    first = call(main, *args, "--json", tmp_path / "a.json")
    assert first.returncode == 0, first.stderr
    data = json.loads((tmp_path / "a.json").read_text())["splits"]
    assert {key: data[key] for key in ("count", "size_real", "size_fake", "seed")} == \
        {"count": 3, "size_real": 43, "size_fake": 33, "seed": 7}
    rows_real = np.random.default_rng((7, 0)).permutation(130)
    rows_fake = np.random.default_rng((7, 1)).permutation(100)
    seen = set()
    for i in range(3):
        r, f = np.sort(rows_real[43 * i:43 * (i + 1)]), np.sort(rows_fake[33 * i:33 * (i + 1)])
        seen |= set(r.tolist())
        ev = hubness_pr.evaluate(real=real[r], fake=fake[f], metrics="pr,dc,rarity")
        assert data["metrics"]["pr.precision"]["values"][i] == ev.pr.precision
        assert data["metrics"]["pr.recall"]["values"][i] == ev.pr.recall
        assert data["metrics"]["dc.coverage"]["values"][i] == ev.dc.coverage
        assert data["metrics"]["dc.density"]["values"][i] == pytest.approx(ev.dc.density, rel=1e-12)
    assert len(seen) == 129  # disjoint: no duplicates, the remainder (130 - 3 * 43) left out
    values = data["metrics"]["pr.precision"]["values"]
    assert data["metrics"]["pr.precision"]["mean"] == pytest.approx(np.mean(values))
    assert data["metrics"]["pr.precision"]["se"] == pytest.approx(brute_se(values))
    assert not any(name.endswith("_se") or "expected" in name for name in data["metrics"])
    assert f"splits.pr.precision_se: {data['metrics']['pr.precision']['se']:.6f}" in first.stdout.splitlines()
    assert len(list((tmp_path / "cache").glob("knn-*-n43-*.npz"))) == 3  # each real split's graph, stored
    second = call(main, *args, "--json", tmp_path / "b.json", "-v")
    assert second.returncode == 0, second.stderr
    assert second.stderr.count("k-NN summary reused") == 4  # the full real set and its 3 splits
    assert json.loads((tmp_path / "b.json").read_text())["splits"]["metrics"] == data["metrics"]


def test_splits_of_a_protocol_preset_average_its_values_not_its_sample_counts():
    """--splits with --protocol: the preset's precision and recall are averaged over the splits; its
    sample counts (each split's size) are not reported as values with a standard error."""
    from hubness_pr.reports.results import splits_block

    real, fake = random_pair(14, 150, 120, 5, 1.1)
    splits = hubness_pr.evaluate_splits(real=real, fake=fake, count=3, metrics=("pr", "protocol"), protocol="prdc")
    metrics = splits_block(splits)["metrics"]
    assert "protocol.precision" in metrics and "protocol.recall" in metrics
    assert metrics["protocol.precision"]["values"] == [e.protocol.precision for e in splits.evaluations]
    assert not any(name.endswith("_used") for name in metrics)
    assert [e.protocol.n_real_used for e in splits.evaluations] == [50, 50, 50]


def test_splits_too_small_for_k_is_one_line_before_any_work(tmp_path):
    real, fake = random_pair(14, 40, 40, 3, 1.0)
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    proc = call(main, tmp_path / "real.npy", tmp_path / "fake.npy", "--splits", "8", "--no_cache")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1] == (
        "improved_precision_recall_hubness.py: error: --splits 8: 40 real samples make splits of 5; the metrics "
        "need at least 6 samples a split (k=5)")  # (after the small-sets warning)
    assert call(main, tmp_path / "real.npy", tmp_path / "fake.npy", "--splits", "1").returncode == 2
    with pytest.raises(hubness_pr.errors.InputError, match="--splits"):
        hubness_pr.evaluate_splits(real=real, fake=fake, count=10, metrics="dc")


@pytest.fixture(scope="module")
def three_generators(tmp_path_factory):
    """One real set; two generated sets of its distribution (a null difference) and one whose spread
    is shrunk (a planted loss of recall and coverage), logged in that order."""
    tmp = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(21)
    np.save(tmp / "real.npy", rng.standard_normal((400, 6)).astype(np.float32))
    np.save(tmp / "same_a.npy", rng.standard_normal((400, 6)).astype(np.float32))
    np.save(tmp / "same_b.npy", rng.standard_normal((400, 6)).astype(np.float32))
    np.save(tmp / "shrunk.npy", (0.5 * rng.standard_normal((400, 6))).astype(np.float32))
    for name in ("same_a", "same_b", "shrunk"):
        proc = call(main, tmp / "real.npy", tmp / f"{name}.npy", "--metrics", "pr,dc", "--log", tmp / "runs.jsonl",
                    "--no_cache", "--no_expected")
        assert proc.returncode == 0, proc.stderr
    return tmp


def test_compare_flags_a_planted_difference_and_not_a_null_one(three_generators):
    tmp = three_generators
    columns = "pr.precision,pr.recall,dc.density,dc.coverage"
    proc = call(main, "compare", tmp / "runs.jsonl", "--columns", columns, "--details", "--baseline", "same_a.npy",
                "--csv", tmp / "table.csv")
    assert proc.returncode == 0, proc.stderr
    details = proc.stdout.split("\n\n")[1]
    with open(tmp / "table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:7] == ["run", "fake", *columns.split(","), "beyond_2se"]
    cell = {row["fake"]: row["beyond_2se"] for row in rows}
    assert cell["same_a.npy"] == "baseline"
    assert cell["same_b.npy"] == "none"
    flagged = cell["shrunk.npy"]
    assert "pr.recall z=-" in flagged and "dc.coverage z=-" in flagged
    lines = details.splitlines()
    assert len(lines) == 8  # 2 runs x 4 columns, each tested
    assert all(("paired" in line) == (".recall" in line or ".coverage" in line) for line in lines)
    assert all(line.endswith("*") for line in lines if line.startswith("run 3 - run 1: pr.recall"))


def test_the_paired_test_is_mcnemars(three_generators):
    records = [json.loads(line) for line in open(three_generators / "runs.jsonl")]
    from hubness_pr.reports import runlog

    for column in runlog.PAIRED_COLUMNS:
        a, b = (runlog.unpack_flags(r["real_flags"][column]) for r in (records[2], records[0]))
        assert a.size == 400 and a.mean() == runlog.lookup(records[2]["metrics"], column)  # the flags of the value
        d = runlog.difference(records[2], records[0], column)
        n10, n01 = int((a & ~b).sum()), int((~a & b).sum())
        mcnemar = (n10 - n01) / math.sqrt(n10 + n01)
        assert d.test == "paired" and d.z == pytest.approx(mcnemar, rel=1e-12)
        other_real = dict(records[2], inputs=dict(records[2]["inputs"], real={"path": "x", "sha256": "0" * 64}))
        assert runlog.difference(other_real, records[0], column).test == "two-sample"  # other real set: unpaired


def test_compare_baseline_choice_and_errors(three_generators):
    tmp = three_generators
    by_label = call(main, "compare", tmp / "runs.jsonl", "--baseline", "3", "--columns", "pr.recall")
    assert by_label.returncode == 0, by_label.stderr
    assert [line.split()[3] for line in by_label.stdout.splitlines()[1:]] == ["pr.recall", "pr.recall", "baseline"]
    proc = call(main, "compare", tmp / "runs.jsonl", "--baseline", "nope")
    assert proc.returncode == 1 and proc.stderr.strip().endswith(
        "--baseline nope: no run is labelled so (runs: 1, 2, 3; or the generated set's file name)")
