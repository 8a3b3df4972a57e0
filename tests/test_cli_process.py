"""The scripts as processes: a stdout that breaks or is closed, and Ctrl-C during start-up.

The files asked for with --json/--per_sample/--plot are written before the results are printed, so
a stdout that fails cannot lose them: a reader that leaves (``| head -1``) ends the run quietly with
status 141 (as a process killed by SIGPIPE); a full or closed stdout is one error line and status 1.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.cli_helpers import FEATURES_SCRIPT, METRICS_SCRIPT, spawn

PYTHON_NOISE = ("Traceback", "Exception ignored", "Broken pipe", "BrokenPipeError")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("process")
    rng = np.random.default_rng(3)
    np.savez(tmp / "real.npz", feature=rng.standard_normal((80, 6)).astype(np.float32))
    np.savez(tmp / "fake.npz", feature=rng.standard_normal((70, 6)).astype(np.float32))
    return tmp


def metric_run(inputs, out, **kwargs):
    """The metric script on the fixture's features, asking for all three files in ``out``."""
    out.mkdir()
    args = [inputs / "real.npz", inputs / "fake.npz", "--json", out / "r.json", "--per_sample", out / "r.csv",
            "--plot", out / "r.png"]
    return spawn(METRICS_SCRIPT, *args, **kwargs)


def assert_files_written(out):
    assert sorted(os.listdir(out)) == ["r.csv", "r.json", "r.png"]
    assert (out / "r.json").read_text().endswith("}\n") and len((out / "r.csv").read_text().splitlines()) == 71


def test_reader_gone_before_the_results_keeps_the_files_and_exits_141(inputs, tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has left before the first line: every write to stdout gets EPIPE
    try:
        proc = metric_run(inputs, tmp_path / "out", stdout=write_end)
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""  # quiet: no "Broken pipe", no "Exception ignored" at exit
    assert_files_written(tmp_path / "out")


def test_head_dash_1_keeps_the_files(inputs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    command = (f'set -o pipefail; "{sys.executable}" "{METRICS_SCRIPT}" real.npz fake.npz --json "{out}/r.json" '
               f'--per_sample "{out}/r.csv" --plot "{out}/r.png" | head -1')
    proc = subprocess.run(["bash", "-c", command], cwd=inputs, capture_output=True, text=True, timeout=300)
    assert proc.stdout.startswith("precision: ") and proc.stdout.count("\n") == 1
    assert proc.returncode in (0, 141), proc.stderr  # 141 when head left before the script's one write
    assert not any(noise in proc.stderr for noise in PYTHON_NOISE), proc.stderr
    assert_files_written(out)


@pytest.mark.parametrize("redirect, reason", [(">/dev/full", "No space left on device"),
                                              (">&-", "Bad file descriptor")])
def test_full_or_closed_stdout_is_one_line_and_keeps_the_files(inputs, tmp_path, redirect, reason):
    out = tmp_path / "out"
    out.mkdir()
    command = (f'"{sys.executable}" "{METRICS_SCRIPT}" real.npz fake.npz --json "{out}/r.json" '
               f'--per_sample "{out}/r.csv" --plot "{out}/r.png" {redirect}')
    proc = subprocess.run(["bash", "-c", command], cwd=inputs, stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"improved_precision_recall_hubness.py: error: stdout: cannot write the results ({reason})"], proc.stderr
    assert_files_written(out)


def _torch_is_loading(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as maps:
        return "libtorch" in maps.read()


@pytest.mark.parametrize("script, args", [
    (METRICS_SCRIPT, ["real.npz", "fake.npz", "--json", "out.json"]),
    (FEATURES_SCRIPT, ["real.npz", "-o", "out.npz"]),  # stops at the imports, whatever its input
])
def test_ctrl_c_during_start_up_is_one_line_and_130(inputs, tmp_path, script, args):
    for name in ("real.npz", "fake.npz"):
        os.symlink(inputs / name, tmp_path / name)
    proc = subprocess.Popen([sys.executable, str(script), *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _torch_is_loading(proc.pid):  # the script is inside `import torch`
        assert proc.poll() is None and time.monotonic() < deadline, "the script ended before torch was imported"
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    # one line: "<script>: interrupted" (during the launcher's imports) or, where the command imports
    # torch lazily inside its run, "<script>: interrupted; <what was not written>"
    assert err.count("\n") == 1 and err.startswith(f"{script.name}: interrupted") and out == "", err
    assert sorted(os.listdir(tmp_path)) == ["fake.npz", "real.npz"]
