"""bench.bench_backbones at toy size, so that the benchmark cannot break unnoticed (its 1,000-image run per
backbone takes an hour on 2 cores and is not part of the suite)."""
import json

from bench import bench_backbones as bench


def test_bench_backbones_runs_at_toy_size(tmp_path):
    out = tmp_path / "r.json"
    assert bench.main(["--n", "4", "--batch_size", "2", "--num_workers", "0", "--max_seconds", "1e-9",
                       "--backbones", "vgg16_random,inception_fid", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {r["backbone"]: r for r in report["results"]}
    assert set(rows) == {"vgg16_random", "inception_fid"}
    assert rows["inception_fid"]["random_weights"] and not rows["vgg16_random"]["random_weights"]
    for r in rows.values():  # no time to spare: one whole batch measured, the time for n projected from it
        assert r["measured_images"] == 2 and r["projected"] and r["images_per_second"] > 0
        assert abs(r["seconds_for_n"] - 2 * r["measured_seconds"]) < 1e-9
    assert rows["inception_fid"]["dim"] == 2048 and rows["inception_fid"]["input_size"] == 299
