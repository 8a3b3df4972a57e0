"""bench.bench_fd_kid at toy size, so that the benchmark cannot break unnoticed (its 5,000 x 2,048 run
takes minutes and is not part of the suite)."""
import json

import pytest

from bench import bench_fd_kid as bench


def test_bench_fd_kid_runs_at_toy_size(tmp_path):
    out = tmp_path / "r.json"
    assert bench.main(["--n", "300", "--dim", "32", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["info"]["n"] == report["info"]["m"] == 300 and report["info"]["dim"] == 32
    assert report["info"]["tf_kid_subset_size"] == 300  # torch-fidelity's 1000 capped at the set size
    results = report["results"]
    assert set(results) == set(bench.CONTENDERS)
    for name in bench.CONTENDERS:
        assert "error" not in results[name], results[name]
        assert results[name]["seconds"] >= 0 and results[name]["peak_rss_mib"] > 0
    knn, both, alone, tf = (results[x]["values"] for x in ("knn", "knn_fd_kid", "fd_kid", "torch_fidelity"))
    assert {"epr", "pr", "dc"} <= set(knn) and "fd" not in knn
    assert knn["pr"] == both["pr"] and knn["dc"] == both["dc"]  # adding fd,kid changes no k-NN value
    assert both["fd"] == alone["fd"] and both["kid"] == alone["kid"]
    assert tf["fd"] == pytest.approx(both["fd"], rel=1e-6)
    assert tf["kid"]["subsets"] == 100 and set(tf["prc"]) == {"precision", "recall", "f_score"}
    summary = report["summary"]
    assert summary["b_over_a"] > 0 and isinstance(summary["goal_met"], bool)
    assert summary["fd_rel_diff"]["torch_fidelity"] < 1e-6
    floor = results["fd_floor"]["floor"]  # this machine's floor for FD's float64 work
    assert floor["gemm_gflops"] > 0 and min(floor["eigvalsh_seconds"].values()) > 0
    assert 0 < floor["floor_warm_seconds"] < floor["floor_cold_seconds"]
    assert summary["floor_b_over_a"] > 1 and summary["floor_warm_b_over_a"] > 1
