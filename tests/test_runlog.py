"""--log FILE.jsonl (one line appended per run, documented keys, digests, never half a line) and
``compare FILE.jsonl`` / ``--compare FILE.jsonl`` (one row per run, CSV, figure, errors)."""
import csv
import errno
import hashlib
import json
import os
import threading

import numpy as np
import pytest
from PIL import Image

import hubness_pr
from hubness_pr.io.outputs import OutputFiles
from hubness_pr.reports import results as report, runlog
from hubness_pr.commands.metrics import main
from tests.cli_helpers import assert_one_line_error, call
from tests.test_reports import random_pair


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runlog")
    real, fake = random_pair(4, 50, 45, 5, 1.2)
    np.savez(tmp / "real.npz", feature=real)
    np.save(tmp / "fake.npy", fake.astype(np.float64))  # any dtype: the digest is of the evaluated float32
    return tmp, real, fake


def digest(features) -> str:
    h = hashlib.sha256(f"float32 {features.shape[0]}x{features.shape[1]}\n".encode())
    h.update(np.ascontiguousarray(features, dtype=np.float32).tobytes())
    return h.hexdigest()


def test_one_line_per_run_with_the_documented_keys(files, tmp_path, monkeypatch):
    src, real, fake = files
    monkeypatch.chdir(tmp_path)
    for i, extra in enumerate(([], ["--k", "4", "--num_samples", "40", "--seed", "2"]), 1):
        proc = call(main, src / "real.npz", src / "fake.npy", "--log", "runs.jsonl", "--json", f"r{i}.json", *extra)
        assert proc.returncode == 0, proc.stderr
        lines = open("runs.jsonl").read().splitlines()
        assert len(lines) == i
        record = json.loads(lines[-1])
        assert tuple(record)[:len(runlog.RECORD_KEYS)] == runlog.RECORD_KEYS
        assert set(record) - set(runlog.RECORD_KEYS) == {"real_flags"}  # the per-real flags of compare's tests
        document = json.loads(open(f"r{i}.json").read())
        assert record["metrics"] == {b: document[b] for b in hubness_pr.METRICS if b in document}
        assert set(record["metrics"]) == set(hubness_pr.DEFAULT_METRICS)  # a default run: every default block
        assert record["params"] == document["params"] and record["seconds"] == document["seconds"]
        assert record["timings"] == document["timings"]
        assert record["time"].endswith("+00:00") and record["argv"][-1] == (extra[-1] if extra else f"r{i}.json")
        assert set(record["versions"]) == {"toolkit", "torch", "numpy", "python"}
    first, second = (json.loads(line) for line in open("runs.jsonl"))
    assert first["inputs"]["real"] == {"path": str(src / "real.npz"), "n": 50, "dim": 5, "dtype": "float32",
                                       "sha256": digest(real), "key": "feature",
                                       "file_bytes": os.path.getsize(src / "real.npz")}
    assert first["inputs"]["fake"]["sha256"] == digest(fake) and first["inputs"]["fake"]["key"] == "(npy)"
    rows = np.sort(np.random.default_rng(3).choice(45, size=40, replace=False))  # --seed 2: fake uses seed + 1
    assert second["inputs"]["fake"]["n"] == 40 and second["inputs"]["fake"]["sha256"] == digest(fake[rows])
    assert second["params"]["k"] == 4 and second["params"]["num_samples"] == 40


def test_log_path_checked_before_any_work(files, tmp_path, monkeypatch):
    src, _, _ = files
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(call(main, src / "real.npz", src / "fake.npy", "--log", src / "real.npz"),
                          "--log", "is the input REAL")
    assert_one_line_error(call(main, src / "real.npz", src / "fake.npy", "--log", "x", "--json", "x"),
                          "is also the output of --json")
    assert_one_line_error(call(main, src / "real.npz", src / "fake.npy", "--log", "no/runs.jsonl"),
                          "--log no/runs.jsonl: folder no does not exist")
    assert os.listdir(tmp_path) == []


def planned_log(path):
    return OutputFiles().add(path, "--log")


def run_record(**changes) -> dict:
    """A run record of the shape --log writes (every key of runlog.RECORD_KEYS, of its type)."""
    record = {"time": "2024-05-01T10:00:00+00:00", "argv": ["real.npz", "fake.npz"],
              "inputs": {"real": {"path": "real.npz", "n": 120, "dim": 4, "dtype": "float32", "sha256": "ab"},
                         "fake": {"path": "fake.npz", "n": 110, "dim": 4, "dtype": "float32", "sha256": "cd"}},
              "params": {"k": 3}, "versions": {"toolkit": "1"}, "metrics": {"pr": {"precision": 0.5, "recall": 0.25}},
              "timings": {"total": 0.5}, "seconds": 1.5}
    record.update(changes)
    return record


def test_append_never_leaves_half_a_line(tmp_path, monkeypatch):
    path = tmp_path / "runs.jsonl"
    path.write_bytes(json.dumps(run_record()).encode() + b'\n{"half')  # something else left a line unfinished
    runlog.append_line(planned_log(path), run_record(seconds=2))
    assert path.read_bytes().endswith(b'\n{"half\n' + json.dumps(run_record(seconds=2), separators=(",", ":")).encode()
                                      + b"\n")
    before = path.read_bytes()

    real_write = os.write

    def short_write(fd, data):  # a disk that fills up in the middle of the line
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(os, "write", short_write)
    with pytest.raises(ValueError, match=r"--log .*runs.jsonl: cannot append \(only \d+ of \d+ bytes written\)"):
        runlog.append_line(planned_log(path), run_record())
    assert path.read_bytes() == before

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(ValueError, match="cannot append \\(No space left on device\\)"):
        runlog.append_line(planned_log(path), run_record())
    assert path.read_bytes() == before
    runs, bad = runlog.read_runs(path)
    assert [n for n, _ in runs] == [1, 3] and [n for n, _ in bad] == [2]


def test_concurrent_appends_keep_whole_lines(tmp_path):
    path = tmp_path / "runs.jsonl"
    payload = run_record(argv=["x" * 70000])  # lines of many pages

    def writer(i):
        for j in range(10):
            runlog.append_line(planned_log(path), dict(payload, i=i, j=j))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs, bad = runlog.read_runs(path)
    assert bad == [] and sorted((r["i"], r["j"]) for _, r in runs) == [(i, j) for i in range(4) for j in range(10)]


def test_new_log_gets_the_umask_mode(files, tmp_path, monkeypatch):
    src, _, _ = files
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o027)
    try:
        assert call(main, src / "real.npz", src / "fake.npy", "--log", "runs.jsonl", "--metrics", "pr").returncode == 0
    finally:
        os.umask(old)
    assert os.stat("runs.jsonl").st_mode & 0o777 == 0o640


@pytest.fixture()
def log_of_three(files, tmp_path, monkeypatch):
    src, _, _ = files
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--k", "5"], ["--metrics", "dc"]):
        proc = call(main, src / "real.npz", src / "fake.npy", "--log", "runs.jsonl", *extra)
        assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in open("runs.jsonl")]


@pytest.mark.parametrize("how", [["compare", "runs.jsonl"], ["--compare", "runs.jsonl"], ["--compare=runs.jsonl"]])
def test_compare_table(log_of_three, how):
    proc = call(main, *how, "--csv", "t.csv", "--plot", "t.png")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert len(lines) == 4  # header + one row per run
    header = lines[0].split()
    assert header[:3] == ["run", "fake", "k"]  # k differs between the runs, so it is shown
    assert header[-2:] == ["seconds", "time"] and "pr.precision" in header and "dc.coverage" in header
    assert [line.split()[:3] for line in lines[1:]] == [["1", "fake.npy", "3"], ["2", "fake.npy", "5"],
                                                        ["3", "fake.npy", "3"]]
    column = header.index("pr.precision")
    assert [line.split()[column] for line in lines[1:]] == [
        f"{log_of_three[0]['metrics']['pr']['precision']:.4f}", f"{log_of_three[1]['metrics']['pr']['precision']:.4f}",
        "-"]
    with open("t.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and list(rows[0]) == header
    assert float(rows[2]["dc.density"]) == log_of_three[2]["metrics"]["dc"]["density"]
    assert rows[2]["pr.precision"] == ""
    metric_columns = [h for h in header if "." in h]
    with Image.open("t.png") as figure:
        assert figure.format == "PNG" and figure.size == report.compare_plot_size(len(metric_columns))


def test_compare_columns_and_several_files(log_of_three, tmp_path):
    lines = open("runs.jsonl").read().splitlines()
    (tmp_path / "other.jsonl").write_text(lines[0] + "\nnot json\n")
    proc = call(main, "compare", "runs.jsonl", "other.jsonl", "--columns", "hubness.real.skewness,dc.coverage")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ("other.jsonl: 1 line(s) are not run records, skipped (line 2; line 2: not JSON "
                                   "(Expecting value: line 1 column 1 (char 0)))")
    out = proc.stdout.splitlines()
    assert out[0].split() == ["run", "fake", "k", "hubness.real.skewness", "dc.coverage", "beyond_2se", "seconds",
                              "time"]  # coverage has standard errors: its differences from run 1 are tested
    assert [line.split()[0] for line in out[1:]] == ["runs.jsonl:1", "runs.jsonl:2", "runs.jsonl:3", "other.jsonl:1"]
    skew = f"{log_of_three[0]['metrics']['hubness']['real']['skewness']:.4f}"
    assert out[1].split()[3] == skew and out[4].split()[3] == skew and out[3].split()[3] == "-"


@pytest.mark.parametrize("args, status, fragments", [
    (["compare", "missing.jsonl"], 1, ["missing.jsonl: no such file"]),
    (["compare", "empty.jsonl"], 1, ["empty.jsonl: no run records"]),
    (["compare", "bin.jsonl"], 1, ["bin.jsonl: not a text file"]),
    (["compare", "runs.jsonl", "--columns", "fid"], 1, ["--columns: no run has 'fid'"]),
    (["compare"], 2, ["give at least one run log"]),
    (["compare", "runs.jsonl", "--csv", "runs.jsonl"], 1, ["--csv runs.jsonl: is the input"]),
    (["compare", "runs.jsonl", "--bogus"], 2, ["unrecognized arguments: --bogus"]),
])
def test_compare_errors(log_of_three, tmp_path, args, status, fragments):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00binary")
    before = {name: os.path.getmtime(name) for name in os.listdir(tmp_path)}
    assert_one_line_error(call(main, *args), *fragments, status=status)
    assert {name: os.path.getmtime(name) for name in os.listdir(tmp_path)} == before


def test_metric_command_still_takes_real_fake_and_help_names_compare(files):
    src, _, _ = files
    proc = call(main, src / "real.npz", src / "fake.npy", "--metrics", "pr")
    assert proc.returncode == 0 and proc.stdout.startswith("pr.precision: ")
    proc = call(main, "--help")
    assert proc.returncode == 0 and "compare FILE.jsonl" in proc.stdout and "--log FILE.jsonl" in proc.stdout
    proc = call(main, "compare", "--help")
    assert proc.returncode == 0 and "--columns" in proc.stdout
