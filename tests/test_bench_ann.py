"""bench.bench_ann at toy size, so that the approximate-selection benchmark cannot break unnoticed."""
import json

from bench import bench_ann as bench


def test_bench_ann_runs_at_toy_size(tmp_path):
    assert bench.main(["--toy", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "results" / "ann_toy.json").read_text())
    assert [r["m"] for r in report["sweep"]] == [None, 8, 16]
    assert all(0 < r["recall_at_k"] <= 1 and 0 < r["hub_jaccard"] <= 1 for r in report["sweep"])
    rows = report["sizes"]
    assert [(r["n"], r["t"]) for r in rows] == [(1500, 3), (1500, 6)]
    for r in rows:
        assert abs(r["precision_diff"] - (r["hnsw"]["precision"] - r["exact"]["precision"])) < 1e-12
        assert 0 < r["exact"]["real_hubs"] < 1500 and 0 < r["hnsw"]["fake_hubs"] < 1500 and r["hnsw_seconds"] > 0
    text = (tmp_path / "ANN_RESULTS_toy.md").read_text()
    assert "| 1,500 | 3 |" in text and "hub-set Jaccard" in text
