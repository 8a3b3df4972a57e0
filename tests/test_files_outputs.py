"""Output files never damage anything and never leave half a result (hubness_pr/io/outputs.py and both scripts).

Symbolic links are written through, special files (character devices, FIFOs, /dev/fd/N) written
directly, new files get the umask's mode, an output equal to an input or to another output is
refused before any work, and a failing output leaves no output of the run behind.
"""
import contextlib
import json
import os
import stat
import threading

import numpy as np
import pytest

from hubness_pr.reports import writers
from hubness_pr.errors import InputError
from hubness_pr.commands import features as features_main
from hubness_pr.commands import metrics as metrics_main
from hubness_pr.io.outputs import OutputFiles, atomic_write, current_umask
from tests.cli_helpers import assert_one_line_error, call

NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="creating a character device (os.mknod) needs root")


def make_char_device(path, minor: int):
    """A character device node of the memory driver: minor 3 is /dev/null, 7 is /dev/full."""
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    return path


def leftovers(*folders):
    return [name for folder in folders for name in os.listdir(folder) if name.endswith(".tmp")]


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


class FifoReader:
    """Reads a FIFO to its end in a thread (a writer's open blocks until a reader has it open)."""

    def __init__(self, path):
        os.mkfifo(path)
        self.path, self.data = path, b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        with open(self.path, "rb") as handle:
            self.data = handle.read()

    def result(self) -> bytes:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "nothing was written to the FIFO"
        return self.data


# ------------------------------------------------------------------------------ hubness_pr/io/outputs.py

def test_symlink_is_written_through_and_kept(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "links").mkdir()
    target = tmp_path / "data" / "result.json"
    target.write_text("old")
    link = tmp_path / "links" / "out.json"
    link.symlink_to("../data/result.json")
    with atomic_write(link, "w") as handle:
        handle.write("new")
    assert link.is_symlink() and os.readlink(link) == "../data/result.json"
    assert target.read_text() == "new"
    dangling = tmp_path / "links" / "later.json"  # a link to a file not there yet creates the target
    dangling.symlink_to("../data/later.json")
    with atomic_write(dangling, "w") as handle:
        handle.write("made")
    assert dangling.is_symlink() and (tmp_path / "data" / "later.json").read_text() == "made"
    assert leftovers(tmp_path / "data", tmp_path / "links") == []


def test_fifo_is_written_directly(tmp_path):
    reader = FifoReader(tmp_path / "pipe")
    with atomic_write(tmp_path / "pipe", "w") as handle:
        handle.write("through the pipe")
    assert reader.result() == b"through the pipe"
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode)
    assert os.listdir(tmp_path) == ["pipe"]


@NEEDS_ROOT
def test_character_device_is_written_directly_never_replaced(tmp_path):
    null = make_char_device(tmp_path / "null", 3)
    with atomic_write(null) as handle:
        handle.write(b"x" * 100_000)
    st = os.lstat(null)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert os.listdir(tmp_path) == ["null"]


@NEEDS_ROOT
def test_failing_special_file_leaves_no_other_output(tmp_path):
    full = make_char_device(tmp_path / "full", 7)  # every write: ENOSPC
    (tmp_path / "kept.json").write_text("old")
    outputs = OutputFiles()
    regular, new, device = (outputs.add(tmp_path / "kept.json", "--json"), outputs.add(tmp_path / "new.csv", "--csv"),
                            outputs.add(full, "--plot"))
    with pytest.raises(ValueError, match=r"--plot .*full: cannot write \(No space left on device\)"):
        with outputs:
            for output in (regular, new, device):
                with output.open("w") as handle:
                    handle.write("content")
    assert (tmp_path / "kept.json").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["full", "kept.json"]


def test_file_descriptor_alias_is_written_directly(tmp_path):
    read_end, write_end = os.pipe()
    try:
        with atomic_write(f"/dev/fd/{write_end}", "w") as handle:
            handle.write("to the descriptor")
        os.close(write_end)
        write_end = None
        with os.fdopen(read_end, "rb") as pipe:
            read_end = None
            assert pipe.read() == b"to the descriptor"
    finally:
        for fd in (read_end, write_end):
            if fd is not None:
                os.close(fd)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_get_the_umask_mode(tmp_path, mask, mode):
    with umask(mask):
        assert current_umask() == mask
        with atomic_write(tmp_path / "out.bin") as handle:
            handle.write(b"1")
    assert stat.S_IMODE(os.stat(tmp_path / "out.bin").st_mode) == mode


def test_replaced_file_keeps_its_mode(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old")
    out.chmod(0o640)
    with umask(0o022), atomic_write(out, "w") as handle:
        handle.write("new")
    assert out.read_text() == "new" and stat.S_IMODE(out.stat().st_mode) == 0o640


def test_read_only_file_is_refused_not_replaced(tmp_path, monkeypatch):
    out = tmp_path / "protected.json"
    out.write_text("keep")
    out.chmod(0o444)
    real_access = os.access
    # root may write any file, whatever its mode: ask as a user would be answered
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(out) else real_access(p, mode))
    with pytest.raises(ValueError, match="--json .*protected.json: is not writable"):
        OutputFiles().add(out, "--json")
    assert out.read_text() == "keep"


def test_outputs_equal_to_an_input_or_to_each_other_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real.npz").write_bytes(b"input")
    os.link(tmp_path / "real.npz", tmp_path / "hard.npz")
    (tmp_path / "soft.npz").symlink_to("real.npz")
    for spelling in ("real.npz", "./real.npz", str(tmp_path / "real.npz"), "hard.npz", "soft.npz"):
        with pytest.raises(ValueError, match=f"--json {spelling}: is the input REAL"):
            OutputFiles(inputs={"REAL": "real.npz"}).add(spelling, "--json")
    outputs = OutputFiles()
    outputs.add("x.json", "--json")
    with pytest.raises(ValueError, match="--per_sample ./x.json: is also the output of --json"):
        outputs.add("./x.json", "--per_sample")
    assert (tmp_path / "real.npz").read_bytes() == b"input"


@pytest.mark.parametrize("name, make, message", [
    ("folder", lambda p: p.mkdir(), "is a folder"),
    ("missing/o.json", lambda p: None, "folder .*missing does not exist"),
    ("loop", lambda p: p.symlink_to(p), "cannot be used as an output"),
])
def test_unusable_output_paths(tmp_path, name, make, message):
    make(tmp_path / name)
    with pytest.raises(ValueError, match=f"--json .*{name}: {message}"):
        OutputFiles().add(tmp_path / name, "--json")


def test_error_in_any_writer_leaves_no_output(tmp_path):
    (tmp_path / "a.json").write_text("old")
    outputs = OutputFiles()
    first, second = outputs.add(tmp_path / "a.json", "--json"), outputs.add(tmp_path / "b.csv", "--per_sample")
    with pytest.raises(ValueError, match=r"--per_sample .*b.csv: cannot write .*'ascii' codec"):
        with outputs:
            with first.open("w") as handle:
                handle.write("new")
            with second.open("w", encoding="ascii") as handle:
                handle.write("caf\u00e9")
    assert sorted(os.listdir(tmp_path)) == ["a.json"] and (tmp_path / "a.json").read_text() == "old"


def test_interrupt_leaves_no_output(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "a.bin") as handle:
            handle.write(b"half")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------- scripts

@pytest.fixture
def features(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(5)
    np.savez("real.npz", feature=rng.standard_normal((60, 5)).astype(np.float32))
    names = [f"f{i}.png" for i in range(50)]
    np.savez("fake.npz", feature=rng.standard_normal((50, 5)).astype(np.float32), paths=np.array(names))
    names[7] = "f7-\udcff.png"  # a file name that was not UTF-8 on disk
    np.savez("badname.npz", feature=rng.standard_normal((50, 5)).astype(np.float32), paths=np.array(names))
    return tmp_path


@NEEDS_ROOT
def test_metric_script_writes_through_links_and_into_special_files(features):
    null = make_char_device(features / "null", 3)
    os.mkdir("results")
    os.symlink("results/per_sample.csv", "per_sample.csv")
    reader = FifoReader(features / "plot.fifo")
    result = call(metrics_main.main, "real.npz", "fake.npz", "--json", null, "--per_sample", "per_sample.csv",
                  "--plot", "plot.fifo")
    assert result.returncode == 0, result.stderr
    assert reader.result()[:4] == b"\x89PNG"
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    assert os.path.islink("per_sample.csv") and len(open("results/per_sample.csv").read().splitlines()) == 51
    assert leftovers(features, features / "results") == []


def test_metric_script_outputs_get_the_umask_mode(features):
    with umask(0o022):
        result = call(metrics_main.main, "real.npz", "fake.npz", "--json", "r.json", "--per_sample", "r.csv",
                      "--plot", "r.png")
    assert result.returncode == 0, result.stderr
    assert {name: stat.S_IMODE(os.stat(name).st_mode) for name in ("r.json", "r.csv", "r.png")} == {
        "r.json": 0o644, "r.csv": 0o644, "r.png": 0o644}


@pytest.mark.parametrize("args, fragment", [
    (["--json", "real.npz"], "--json real.npz: is the input REAL (real.npz)"),
    (["--per_sample", "./fake.npz"], "--per_sample ./fake.npz: is the input FAKE (fake.npz)"),
    (["--json", "x", "--per_sample", "x"], "--per_sample x: is also the output of --json"),
    (["--json", "x", "--plot", "x"], "--plot x: is also the output of --json"),
])
def test_metric_script_refuses_output_equal_to_an_input_before_computing(features, monkeypatch, args, fragment):
    def no_work(*a, **k):
        raise AssertionError("inputs were read before the outputs were checked")

    monkeypatch.setattr(metrics_main, "load_features", no_work)
    before = {name: open(name, "rb").read() for name in os.listdir(".")}
    assert_one_line_error(call(metrics_main.main, "real.npz", "fake.npz", *args), fragment, status=1)
    assert {name: open(name, "rb").read() for name in os.listdir(".")} == before


def test_getfeature_refuses_output_equal_to_its_input_before_computing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("imgs.npy", np.zeros((2, 8, 8, 3), np.uint8))
    np.savez("imgs.npz", images=np.zeros((2, 8, 8, 3), np.uint8))
    before = open("imgs.npz", "rb").read()

    def no_work(*a, **k):
        raise AssertionError("extraction started before the output was checked")

    monkeypatch.setattr(features_main, "extract_path", no_work)
    for argv, fragment in [(["imgs.npz", "-o", "imgs.npz"], "--fname_precalc imgs.npz: is the input IMAGES"),
                           (["imgs.npy", "-o", "w.npz", "--weights", "w.npz"], "--fname_precalc w.npz: is the input "
                                                                               "--weights")]:
        if "w.npz" in argv:
            open("w.npz", "wb").close()
        assert_one_line_error(call(features_main.main, *argv), fragment, status=1)
    assert open("imgs.npz", "rb").read() == before


def test_output_that_fails_midway_leaves_no_output_of_the_run(features, monkeypatch):
    (features / "old.json").write_text("{}")

    def disk_full(handle, *args):  # the figure is written after the JSON and the CSV
        handle.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writers, "write_plot", disk_full)
    result = call(metrics_main.main, "real.npz", "fake.npz", "--json", "old.json", "--per_sample", "p.csv",
                  "--plot", "p.png", "-q")  # -q: no small-set warning, the error line stays
    assert_one_line_error(result, "--plot p.png: cannot write (No space left on device)", status=1)
    assert json.loads((features / "old.json").read_text()) == {}  # not replaced by this run's JSON
    assert sorted(os.listdir(features)) == ["badname.npz", "fake.npz", "old.json", "real.npz"]


def old_files(folder):
    return [name for name in os.listdir(folder) if name.endswith(".old")]


def staged(outputs, name, text):
    with outputs.add(name, f"--{os.path.basename(str(name)).split('.')[0]}").open("w") as handle:
        handle.write(text)


# the log's own failure is an InputError (hubness_pr.reports.runlog._cannot_append); a plain ValueError would be a bug
@pytest.mark.parametrize("failure", [InputError("--log runs.jsonl: cannot append (No space left on device)"),
                                     OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_last_step_that_fails_puts_every_output_back(tmp_path, failure):
    (tmp_path / "old.json").write_text("old json")
    os.chmod(tmp_path / "old.json", 0o640)
    inode = os.stat(tmp_path / "old.json").st_ino
    (tmp_path / "target.csv").write_text("old csv")
    os.symlink("target.csv", tmp_path / "link.csv")
    seen = {}

    def last_step():  # runs with the new files in place
        seen.update({name: (tmp_path / name).read_text() for name in ("old.json", "new.png", "link.csv")})
        raise failure

    outputs = OutputFiles()
    for name in ("old.json", "new.png", "link.csv"):
        staged(outputs, tmp_path / name, f"new {name}")
    outputs.on_commit(last_step)
    with pytest.raises(type(failure) if isinstance(failure, KeyboardInterrupt) else ValueError) as raised:
        outputs.commit()
    assert seen == {"old.json": "new old.json", "new.png": "new new.png", "link.csv": "new link.csv"}
    assert (tmp_path / "old.json").read_text() == "old json" and os.stat(tmp_path / "old.json").st_ino == inode
    assert stat.S_IMODE(os.stat(tmp_path / "old.json").st_mode) == 0o640
    assert (tmp_path / "target.csv").read_text() == "old csv" and os.path.islink(tmp_path / "link.csv")
    assert sorted(os.listdir(tmp_path)) == ["link.csv", "old.json", "target.csv"]  # no new file, .tmp or .old
    if not isinstance(failure, KeyboardInterrupt):
        message = str(raised.value)
        assert message.startswith(str(failure).split(";")[0] if isinstance(failure, ValueError) else "[Errno 28]")
        assert message.endswith(f"; {tmp_path / 'old.json'}, {tmp_path / 'new.png'}, {tmp_path / 'link.csv'} "
                                "put back as they were")


def test_a_last_step_that_succeeds_leaves_no_backup(tmp_path):
    (tmp_path / "a.json").write_text("old")
    outputs = OutputFiles()
    staged(outputs, tmp_path / "a.json", "new")
    done = []
    outputs.on_commit(lambda: done.append(sorted(old_files(tmp_path))))
    outputs.commit()
    assert len(done[0]) == 1 and done[0][0].startswith(".a.json.")  # the old file kept until the step ran
    assert (tmp_path / "a.json").read_text() == "new" and os.listdir(tmp_path) == ["a.json"]


@pytest.mark.parametrize("links", ["allowed", "refused"])
def test_a_rename_that_fails_midway_puts_the_earlier_ones_back(tmp_path, monkeypatch, links):
    for name in ("a.json", "b.csv"):
        (tmp_path / name).write_text(f"old {name}")
    outputs = OutputFiles()
    for name in ("a.json", "b.csv", "c.png"):
        staged(outputs, tmp_path / name, f"new {name}")
    if links == "refused":  # a file system without hard links, or another owner's file: renamed aside instead
        def no_link(*args, **kwargs):
            raise PermissionError(1, "Operation not permitted")
        monkeypatch.setattr(os, "link", no_link)
    real_replace, calls = os.replace, []

    def replace(source, target):
        if str(source).endswith(".tmp"):
            calls.append(target)
            if str(target).endswith("c.png"):
                raise OSError(5, "Input/output error")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(ValueError, match=r"Input/output error.*a.json, .*b.csv put back as they were$"):
        outputs.commit()
    assert len(calls) == 3
    assert {name: (tmp_path / name).read_text() for name in os.listdir(tmp_path)} == {"a.json": "old a.json",
                                                                                      "b.csv": "old b.csv"}


def test_a_direct_output_written_before_the_failure_is_named(tmp_path):
    (tmp_path / "a.json").write_text("old")
    outputs = OutputFiles()
    staged(outputs, "/dev/null", "to the device")
    staged(outputs, tmp_path / "a.json", "new")

    def full():
        raise InputError("--log /dev/full: cannot append (No space left on device)")

    outputs.on_commit(full)
    with pytest.raises(ValueError) as raised:
        outputs.commit()
    assert str(raised.value) == (f"--log /dev/full: cannot append (No space left on device); {tmp_path / 'a.json'} "
                                 "put back as they were; written directly before the failure: /dev/null")
    assert os.listdir(tmp_path) == ["a.json"] and (tmp_path / "a.json").read_text() == "old"
