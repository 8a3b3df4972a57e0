"""improved_precision_recall_hubness.py through main(argv): stdout, JSON, CSV, and every input error;
as a process where an interrupt is what is tested."""
import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from PIL import Image

import hubness_pr
from hubness_pr.commands.metrics import main
from hubness_pr.reports.results import PLOT_SIZE
from tests import oracle
from tests.cli_helpers import METRICS_SCRIPT as SCRIPT
from tests.cli_helpers import assert_one_line_error, call


def run(*args):
    return call(main, *args)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    real = rng.standard_normal((160, 8)).astype(np.float32)
    fake = (rng.standard_normal((140, 8)) * 1.3 + 0.2).astype(np.float32)
    np.savez(tmp / "real.npz", feature=real, paths=np.array([f"r{i}.png" for i in range(160)]))
    np.savez(tmp / "fake.npz", feature=fake, paths=np.array([f"f{i}.png" for i in range(140)]))
    return tmp, real, fake


def test_stdout_json_and_csv(files):
    tmp, real, fake = files
    out_json, out_csv, out_png = tmp / "res.json", tmp / "per.csv", tmp / "plot.png"
    proc = run(tmp / "real.npz", tmp / "fake.npz", "--json", out_json, "--per_sample", out_csv, "--plot", out_png)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    ref = oracle.all_metrics(real, fake)
    name0, value0 = lines[0].split(": ")
    name1, value1 = lines[1].split(": ")
    assert (name0, name1) == ("precision", "recall")
    assert float(value0) == pytest.approx(ref["epr_precision"], abs=1e-6)
    assert float(value1) == pytest.approx(ref["epr_recall"], abs=1e-6)
    assert proc.stderr == ""  # quiet by default
    assert all(": " in line for line in lines)
    values = dict(line.split(": ", 1) for line in lines)
    assert float(values["pr.precision"]) == pytest.approx(ref["precision"], abs=1e-6)
    assert float(values["dc.coverage"]) == pytest.approx(ref["coverage"], abs=1e-6)

    data = json.loads(out_json.read_text())
    for key in ("n_real", "n_fake", "dim", "params", "epr", "pr", "dc", "realism", "rarity", "hubness", "seconds"):
        assert key in data
    assert (data["n_real"], data["n_fake"], data["dim"]) == (160, 140, 8)
    assert {"k", "dc_k", "hubsK", "seed"} <= set(data["params"])
    assert {"precision", "recall", "real_hubs", "fake_hubs"} <= set(data["epr"])
    assert {"mean", "median", "defined", "fraction_defined"} <= set(data["realism"])
    assert {"inside", "fraction_inside", "mean", "median"} <= set(data["rarity"])
    assert {"skewness", "max", "hubs", "antihubs"} <= set(data["hubness"]["real"])
    assert data["pr"]["precision"] == pytest.approx(ref["precision"])
    assert data["epr"]["precision_minus_exact"] == pytest.approx(ref["epr_precision"] - ref["precision"])

    with out_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 140
    assert list(rows[0]) == ["index", "path", "in_real_manifold", "density", "realism", "rarity", "k_occurrence",
                            "is_hub"]
    assert [r["path"] for r in rows[:2]] == ["f0.png", "f1.png"]
    assert [int(r["in_real_manifold"]) for r in rows] == ref["in_real"].astype(int).tolist()
    assert [int(r["k_occurrence"]) for r in rows] == ref["occ_fake"].tolist()
    for row, rarity in zip(rows, ref["rarity"]):
        assert (row["rarity"] == "") == bool(np.isnan(rarity))
    with Image.open(out_png) as figure:
        assert figure.format == "PNG" and figure.size == PLOT_SIZE


def test_metrics_subset_and_absent_keys(files):
    tmp, real, fake = files
    proc = run(tmp / "real.npz", tmp / "fake.npz", "--metrics", "dc", "--json", tmp / "dc.json", "--dc-k", "4")
    assert proc.returncode == 0, proc.stderr
    assert not proc.stdout.startswith("precision:")
    data = json.loads((tmp / "dc.json").read_text())
    assert "dc" in data and not {"epr", "pr", "realism", "rarity", "hubness"} & set(data)
    ref = oracle.all_metrics(real, fake, dc_k=4)
    assert data["dc"]["density"] == pytest.approx(ref["density"])


def test_num_samples_seed_recorded_and_deterministic(files):
    tmp, _, _ = files
    outs = []
    for name in ("s1.json", "s2.json"):
        proc = run(tmp / "real.npz", tmp / "fake.npz", "--num_samples", 50, "--seed", 7, "--json", tmp / name,
                   "--per_sample", tmp / (name + ".csv"))
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads((tmp / name).read_text()))
    assert outs[0]["params"]["seed"] == 7 and outs[0]["params"]["num_samples"] == 50
    assert outs[0]["n_real"] == 50 and outs[0]["pr"] == outs[1]["pr"]
    rows = list(csv.DictReader((tmp / "s1.json.csv").open()))
    indices = [int(r["index"]) for r in rows]
    assert len(indices) == 50 and indices == sorted(indices) and indices[-1] < 140
    assert all(r["path"] == f"f{i}.png" for r, i in zip(rows, indices))


def test_other_array_formats_accepted(files):
    tmp, real, fake = files
    np.save(tmp / "real64.npy", real.astype(np.float64))
    np.savez(tmp / "fake_int.npz", reps=(fake * 10).astype(np.int16))
    proc = run(tmp / "real64.npy", tmp / "fake_int.npz", "--metrics", "pr")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("pr.precision: ")


def _bad_files(tmp):
    rng = np.random.default_rng(1)
    good = rng.standard_normal((30, 4)).astype(np.float32)
    np.savez(tmp / "good.npz", feature=good)
    (tmp / "text.npz").write_text("not an array")
    np.savez(tmp / "nokey.npz", something=good)
    np.savez(tmp / "rank3.npz", feature=good.reshape(30, 2, 2))
    np.savez(tmp / "dim5.npz", feature=rng.standard_normal((30, 5)).astype(np.float32))
    bad = good.copy()
    bad[4, 2] = np.nan
    np.savez(tmp / "nan.npz", feature=bad)
    inf = good.copy()
    inf[0, 0] = np.inf
    np.savez(tmp / "inf.npz", feature=inf)
    np.savez(tmp / "tiny.npz", feature=good[:3])


@pytest.mark.parametrize("args, status, fragments", [
    (["missing.npz", "good.npz"], 1, ["missing.npz: no such file"]),
    (["good.npz", "text.npz"], 1, ["text.npz: not a .npz or .npy array file"]),
    (["good.npz", "nokey.npz"], 1, ["nokey.npz: no feature array found", "something"]),
    (["rank3.npz", "good.npz"], 1, ["rank3.npz (real): expected a 2-D feature array", "(30, 2, 2)"]),
    (["good.npz", "dim5.npz"], 1, ["dim5.npz (fake): 5-dimensional", "good.npz (real) has 4", "different dimensions"]),
    (["good.npz", "nan.npz"], 1, ["nan.npz (fake): row 4 contains NaN or Inf"]),
    (["inf.npz", "good.npz"], 1, ["inf.npz (real): row 0 contains NaN or Inf"]),
    (["good.npz", "tiny.npz"], 1, ["tiny.npz: fake has 3 samples", "at least 4"]),
    (["good.npz", "good.npz", "--k", "0"], 2, ["argument --k: must be >= 1, got 0"]),
    (["good.npz", "good.npz", "--k", "two"], 2, ["argument --k: expected an integer"]),
    (["good.npz", "good.npz", "--bogus"], 2, ["unrecognized arguments: --bogus"]),
    (["good.npz", "good.npz", "--met", "pr"], 2, ["unrecognized arguments: --met"]),
    (["good.npz", "good.npz", "--metrics", "pr,fid"], 2, ["argument --metrics: unknown metric 'fid'"]),
    (["good.npz", "good.npz", "--metrics", ","], 2, ["argument --metrics: no metric given"]),
    (["good.npz", "good.npz", "--device", "gpu7"], 2, ["argument --device: expected auto, cpu, cuda or cuda:N"]),
    (["good.npz", "good.npz", "--json", "nowhere/out.json"], 1, ["--json nowhere/out.json: folder nowhere does not exist"]),
    (["good.npz", "good.npz", "--per_sample", "nowhere/x.csv"], 1, ["--per_sample nowhere/x.csv: folder nowhere"]),
    (["good.npz", "good.npz", "--gallery", "g", "--metrics", "dc"], 1, ["--gallery g: needs at least one of"]),
    (["good.npz", "good.npz", "--log", "nowhere/l.jsonl"], 1, ["--log nowhere/l.jsonl: folder nowhere does not exist"]),
    (["good.npz", "good.npz", "--num_samples", "31"], 1, ["--num_samples 31 is larger than the 30 samples of good.npz"]),
    (["good.npz"], 2, ["the following arguments are required: FAKE"]),
])
def test_errors_are_one_line_and_write_nothing(tmp_path, monkeypatch, args, status, fragments):
    """At the default verbosity: exactly the error line (no log line before it); usage errors exit 2."""
    _bad_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    result = run(*args, "--json", "out.json") if "--json" not in args else run(*args)
    assert_one_line_error(result, *fragments, status=status)
    assert set(os.listdir(tmp_path)) == before


def test_interrupted_run_leaves_no_output(tmp_path):
    rng = np.random.default_rng(2)
    np.save(tmp_path / "big_real.npy", rng.standard_normal((20000, 128)).astype(np.float32))
    np.save(tmp_path / "big_fake.npy", rng.standard_normal((20000, 128)).astype(np.float32))
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "big_real.npy", "big_fake.npy", "--json", "out.json",
                             "--per_sample", "out.csv", "--memory_budget", "1", "--progress"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = b""
    # interrupt in the middle of the computation: once the first k-NN pass has begun, about 3 s of
    # tiles (real k-NN, fake k-NN, real x fake, on 2 cores) remain, a wide margin on a loaded machine
    while b"k-NN real" not in seen:
        chunk = proc.stderr.read1(4096)
        assert chunk, f"the run ended before it could be interrupted: {seen[-300:]!r}"
        seen += chunk
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    err = (seen + err).decode()
    assert proc.returncode == 130, err[-500:]
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["big_fake.npy", "big_real.npy"]


def test_library_result_equals_cli(files):
    tmp, real, fake = files
    proc = run(tmp / "real.npz", tmp / "fake.npz", "--json", tmp / "lib.json", "--hubsK", "2", "--k", "4")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp / "lib.json").read_text())
    ev = hubness_pr.evaluate(real=real, fake=fake, k=4, hubs_k=2)
    assert data["epr"]["precision"] == ev.epr.precision and data["pr"]["recall"] == ev.pr.recall
    assert data["params"]["hubsK"] == 2 and data["params"]["k"] == 4
