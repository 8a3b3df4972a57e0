"""bench.bench_scale at toy size, so that the benchmark cannot break unnoticed (its full run takes
tens of minutes and is not part of the suite)."""
import json

from bench import bench_scale as bench


def test_bench_scale_runs_at_toy_size(tmp_path):
    assert bench.main(["--toy", "--out", str(tmp_path / "R.md"), "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["cache"]["status"] == ["computed", "reused"] and report["cache"]["identical_json"]
    assert report["processes"]["same_results"] is True
    assert [row["n"] for row in report["sizes"]] == [300]
    assert all("seconds" in report["sizes"][0][name] for name in ("toolkit", "epr", "prdc", "floor"))
    assert report["mmap"]["peak_anon_mib"] > 0
    text = (tmp_path / "R.md").read_text()
    assert "## The real set once" in text and "identical" in text
