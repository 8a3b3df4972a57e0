"""bench.bench_protocols at toy size, so that the benchmark cannot break unnoticed (its 10,000 x 2,048
run takes a minute and a half and is not part of the suite)."""
import json

from bench import bench_protocols as bench


def test_bench_protocols_runs_at_toy_size_and_each_preset_equals_its_peer(tmp_path):
    out = tmp_path / "r.json"
    assert bench.main(["--n", "150", "--dim", "16", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    results = report["results"]
    assert set(results) == set(bench.CONTENDERS)
    for name in bench.CONTENDERS:
        assert "error" not in results[name], results[name]
        assert results[name]["seconds"] >= 0 and results[name]["peak_rss_mib"] > 0
    assert set(results["ours_prdc"]["values"]) == {"precision", "recall", "density", "coverage"}
    assert set(results["peer_torch_fidelity"]["values"]) == {"precision", "recall", "f_score"}
    assert set(report["summary"]) == set(bench.PRESETS)
    assert all(entry["same_values"] for entry in report["summary"].values())
