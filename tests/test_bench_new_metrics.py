"""bench.bench_new_metrics at toy size, so that the benchmark cannot break unnoticed (its 20,000 x 2,048
run takes many minutes and is not part of the suite)."""
import json

from bench import bench_new_metrics as bench


def test_bench_new_metrics_runs_at_toy_size(tmp_path):
    out = tmp_path / "r.json"
    assert bench.main(["--n", "300", "--dim", "32", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["info"]["n"] == report["info"]["m"] == 300 and report["info"]["dim"] == 32
    results = report["results"]
    assert set(results) == set(bench.CONTENDERS)
    for name in bench.CONTENDERS:
        assert "error" not in results[name], results[name]
        assert results[name]["seconds"] > 0 and results[name]["peak_rss_mib"] > 0
    both = results["default_both"]["values"]
    assert set(both["ppr"]) >= {"precision", "recall"} and set(both["cdc"]) >= {"density", "coverage"}
    assert both["ppr"] == results["default_ppr"]["values"]["ppr"]
    assert both["cdc"] == results["default_cdc"]["values"]["cdc"]
    assert "ppr" not in results["default"]["values"]
    # P-P&R re-measures every pair within its radius: more refined pairs than the default metrics'
    assert results["default_ppr"]["refined_pairs"] > results["default"]["refined_pairs"]
    summary = report["summary"]
    assert summary["default_both_over_default"] > 0 and summary["default_all_new_over_default"] > 0
    assert isinstance(summary["goal_met"], bool)
    assert summary["same_default_values"] is True
