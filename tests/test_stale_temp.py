"""Temporary files a killed run leaves (hubness_pr/io/outputs.py: ``temp_prefix``, ``sweep_stale``).

A run killed outright (SIGKILL) cannot remove its temporary file. Its name tells who made it
(``.NAME.HOST-PID.RANDOM.tmp``); the next write of NAME in that folder removes it where the writer ran
on this host, is gone, and the file has been unchanged for an hour. Everything else is left: a live
writer's, another host's, a recent one, an older name form, another name's.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np

from hubness_pr.io import outputs
from hubness_pr.io.outputs import STALE_SECONDS, atomic_write, sweep_stale, temp_prefix

HOST = outputs._host()


def dead_pid() -> int:
    """The PID of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def make(folder, name: str, age: float = 2 * STALE_SECONDS) -> str:
    """A file ``name`` in ``folder`` last changed ``age`` seconds ago."""
    path = os.path.join(folder, name)
    with open(path, "wb") as handle:
        handle.write(b"half")
    then = time.time() - age
    os.utime(path, (then, then))
    return name


def test_a_dead_writers_old_temporary_file_goes_at_the_next_write_and_nothing_else(tmp_path):
    gone = dead_pid()
    stale = make(tmp_path, f".out.json.{HOST}-{gone}.abc123.tmp")
    kept = [
        make(tmp_path, f".out.json.{HOST}-{gone}.recent.tmp", age=10),           # changed a moment ago
        make(tmp_path, f".out.json.{HOST}-{os.getpid()}.mine.tmp"),              # a live writer's
        make(tmp_path, f".out.json.{HOST}x-{gone}.other.tmp"),                   # another host's
        make(tmp_path, ".out.json.k3j4h5g6.tmp"),                                # the older name form
        make(tmp_path, f".other.json.{HOST}-{gone}.abc123.tmp"),                 # another name's
        make(tmp_path, f".out.json.bak.{HOST}-{gone}.abc123.tmp"),               # out.json.bak's
        make(tmp_path, f".out.json.{HOST}-{gone}.abc123.tmp.keep"),              # not a temporary file
    ]
    with atomic_write(tmp_path / "out.json", "w") as handle:
        handle.write("{}\n")
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["out.json"])
    assert not (set(os.listdir(tmp_path)) & {stale})


def test_the_temporary_file_of_a_killed_run_is_named_by_its_writer_and_swept(tmp_path):
    target = tmp_path / "features.npz"
    code = ("import os, signal\nfrom hubness_pr.io.outputs import atomic_write\n"
            f"with atomic_write({str(target)!r}) as handle:\n"
            "    handle.write(b'half a file')\n    handle.flush()\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", code], cwd=os.getcwd(), capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    left = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    assert len(left) == 1 and not target.exists()
    assert left[0].startswith(f".features.npz.{HOST}-")  # who made it
    assert sweep_stale(tmp_path, "features.npz") == []  # an hour not passed: kept
    then = time.time() - 2 * STALE_SECONDS
    os.utime(tmp_path / left[0], (then, then))
    with atomic_write(target) as handle:
        handle.write(b"whole")
    assert sorted(os.listdir(tmp_path)) == ["features.npz"] and target.read_bytes() == b"whole"


def test_the_cache_writer_sweeps_its_folder_too(tmp_path):
    from hubness_pr.io.summary import _write_private

    gone = dead_pid()
    stale = make(tmp_path, f".knn-x.npz.{HOST}-{gone}.0123456789abcdef.tmp")
    live = make(tmp_path, f"{temp_prefix('knn-x.npz')}fedcba9876543210.tmp")  # this process's: a live writer's
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _write_private(folder, "knn-x.npz", {"a": np.arange(3)})
    finally:
        os.close(folder)
    assert sorted(os.listdir(tmp_path)) == sorted([live, "knn-x.npz"]) and stale not in os.listdir(tmp_path)
    with np.load(tmp_path / "knn-x.npz") as data:
        assert data["a"].tolist() == [0, 1, 2]
