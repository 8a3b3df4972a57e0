"""bench.gpu_check at toy sizes on the CPU (fused kernels vs the torch route), so that the GPU check
cannot break unnoticed between the sessions that have a GPU."""
import json

import pytest
import torch

from bench import gpu_check


def test_gpu_check_runs_at_toy_sizes_on_the_cpu(tmp_path):
    assert gpu_check.main(["--toy", "--device", "cpu", "--no-pytest", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check_toy.json").read_text())
    assert report["ok"] is True
    assert set(report["hard_cases"]) >= {"collapse_0.001", "offset_10", "scale_2^-120", "half_integer_grid",
                                         "radius_rounding", "many_duplicates"}
    assert all(v is not False for case in report["hard_cases"].values() for v in case.values())
    assert report["realistic"]["pr"] is True and report["realistic"]["fake_k_occurrence"] is True
    timing = report["timing"]
    assert [row["n"] for row in timing] == [300, 300, 800, 800]
    # every timed row carries the run's metric values and the floor's tile count
    assert all(set(row["values"]) == {"epr", "pr", "dc"} and row["tiles"] >= 1 for row in timing)
    # a smaller budget means more tiles
    assert timing[0]["tiles"] > timing[1]["tiles"]
    scale = report["scale"]
    assert scale["cached"]["identical"] is True and scale["cached"]["n_real"] == 2000
    assert scale["largest"][0]["n"] == 1000 and "pr" in scale["largest"][0]["values"]
    processes = report["processes"]
    assert processes["backend"] == "gloo" and all(v is not False for v in processes["group_vs_plain"].values())
    assert processes["extraction"] == {"images": 7, "exit_codes": [0, 0, 0], "npy_equals_npz": True,
                                       "max_rel_diff_vs_cpu": 0.0}  # on the CPU: the same extraction twice


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the full check runs instead")
def test_gpu_check_refuses_cuda_without_a_gpu(capsys):
    assert gpu_check.main(["--no-pytest"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
