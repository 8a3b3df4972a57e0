"""The scripts as processes: a stdout that breaks or is closed, Ctrl-C during start-up, and SIGTERM
(one line, status 143, no temporary file or gallery folder left).

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
    np.savez(tmp / "real.npz", feature=rng.standard_normal((120, 6)).astype(np.float32))  # 100 or more: no
    np.savez(tmp / "fake.npz", feature=rng.standard_normal((110, 6)).astype(np.float32))  # small-set warning
    return tmp


def metric_run(inputs, out, **kwargs):
    """The metric script on the fixture's features, asking for all three files in ``out``."""
    out.mkdir()
    args = [inputs / "real.npz", inputs / "fake.npz", "--json", out / "r.json", "--per_sample", out / "r.csv",
            "--plot", out / "r.png"]
    return spawn(METRICS_SCRIPT, *args, **kwargs)


def assert_files_written(out):
    assert sorted(os.listdir(out)) == ["r.csv", "r.json", "r.png"]
    assert (out / "r.json").read_text().endswith("}\n") and len((out / "r.csv").read_text().splitlines()) == 111


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


# ------------------------------------------------------------------ SIGTERM (a batch scheduler's stop)

def _start(script, args, cwd):
    env = {**os.environ, "HUBNESS_CACHE": str(cwd.parent / f"{cwd.name}-cache")}  # not in the folder checked
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _wait_until(proc, condition, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()[1]}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.01)


def _terminate(proc) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=120)


def _temporary_files(folder):
    return [str(p) for p in folder.rglob("*") if p.name.endswith((".tmp", ".old"))]


@pytest.fixture(scope="module")
def big_inputs(tmp_path_factory):
    """Sets whose run takes several seconds (about 10 s on 2 cores): time to stop it inside a pass."""
    tmp = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(4)
    np.save(tmp / "real.npy", rng.standard_normal((30000, 32)).astype(np.float32))
    np.save(tmp / "fake.npy", rng.standard_normal((30000, 32)).astype(np.float32))
    return tmp


def test_sigterm_inside_a_pass_is_one_line_143_and_leaves_nothing(big_inputs, tmp_path):
    for name in ("real.npy", "fake.npy"):
        os.symlink(big_inputs / name, tmp_path / name)
    (tmp_path / "r.json").write_text("the previous run's")
    proc = _start(METRICS_SCRIPT, ["real.npy", "fake.npy", "--json", "r.json", "--per_sample", "r.csv",
                                   "--gallery", "gallery", "--log", "runs.jsonl", "--no_cache"], tmp_path)
    _wait_until(proc, (tmp_path / "gallery").is_dir, "gallery folder (the outputs checked)")
    time.sleep(1.5)  # loaded (memory-mapped) and inside the k-NN passes
    out, err = _terminate(proc)
    assert proc.returncode == 143, err
    assert err == "improved_precision_recall_hubness.py: terminated; no output file was written or changed\n"
    assert out == ""
    assert sorted(os.listdir(tmp_path)) == ["fake.npy", "r.json", "real.npy"]  # no gallery folder, no log
    assert (tmp_path / "r.json").read_text() == "the previous run's" and _temporary_files(tmp_path) == []


def test_sigterm_while_the_outputs_are_staged_removes_them(inputs, tmp_path):
    for name in ("real.npz", "fake.npz"):
        os.symlink(inputs / name, tmp_path / name)
    os.mkfifo(tmp_path / "plot.fifo")  # nobody reads it: the commit waits there, every other file staged
    proc = _start(METRICS_SCRIPT, ["real.npz", "fake.npz", "--json", "r.json", "--per_sample", "r.csv",
                                   "--gallery", "gallery", "--plot", "plot.fifo", "-q"], tmp_path)
    _wait_until(proc, lambda: any(name.startswith(".gallery.csv.") for name in os.listdir(tmp_path / "gallery"))
                if (tmp_path / "gallery").is_dir() else False, "staged gallery.csv")
    assert _temporary_files(tmp_path)  # the staged files are there now
    time.sleep(0.3)
    out, err = _terminate(proc)
    assert proc.returncode == 143, err
    assert err == "improved_precision_recall_hubness.py: terminated; no output file was written or changed\n"
    assert sorted(os.listdir(tmp_path)) == ["fake.npz", "plot.fifo", "real.npz"] and _temporary_files(tmp_path) == []


def test_sigterm_during_extraction_is_one_line_143_and_leaves_no_temporary_file(tmp_path):
    from tests.test_extract import digit_images, write_folder
    images, _ = digit_images(np.arange(600))
    write_folder(tmp_path / "images", images)
    proc = _start(FEATURES_SCRIPT, ["images", "-o", "out.npz", "--backbone", "efficientnet_lite0", "--num_workers",
                                    "0", "--batch_size", "4", "--checkpoint_every", "8"], tmp_path)
    partial = tmp_path / "out.npz.partial"
    _wait_until(proc, lambda: partial.is_dir() and len(os.listdir(partial)) >= 2, "checkpoint shards")
    out, err = _terminate(proc)
    assert proc.returncode == 143, err
    assert err == ("getFeature.py: terminated; out.npz was not written; run the same command again to resume from "
                   "the last checkpoint\n")
    assert not (tmp_path / "out.npz").exists() and _temporary_files(tmp_path) == []
