"""bench.coverage_of_intervals at toy size: the 95 % intervals of the whole-pipeline (--splits)
standard errors cover the expected value of P, R, D and C near the nominal rate, and the conditional
ones cover precision and recall at least loosely (they leave out the radii's randomness: below
nominal is documented, near zero would be a wrong formula). The full run's numbers are in the README."""
import json

from bench import coverage_of_intervals as bench


def test_coverage_of_intervals_at_toy_size(tmp_path):
    assert bench.main(["--toy", "--out", str(tmp_path / "c.json")]) == 0
    report = json.loads((tmp_path / "c.json").read_text())
    (size,) = report["sizes"]
    assert size["n"] == 200 and size["coverage"]["reps"] == 60
    metrics = size["coverage"]["metrics"]
    assert set(metrics) == set(bench.METRICS)
    for name, m in metrics.items():
        assert m["splits"]["rate"] >= 0.85, (name, m)
        assert m["conditional"]["rate"] >= 0.65, (name, m)
        assert 0 < m["mean_conditional_se"] < m["sd_of_values"] * 1.5
    assert bench.coverage([{name: {"value": v, "se": 1e-9, "splits_mean": v, "splits_se": 1e-9}
                            for name in bench.METRICS} for v in (0.1, 0.2, 0.9)], 5)["metrics"]["pr.recall"][
        "conditional"]["rate"] == 0.0  # intervals too narrow cover nothing: the check can fail
