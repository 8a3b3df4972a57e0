"""Typed errors (hubness_pr/errors.py): bad input is an InputError raised where it is found and
turned into one line by the commands; which file is at fault is read from its fields, a cache miss is
a type, and any other exception (a fault of the toolkit) keeps its traceback."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

import hubness_pr
from hubness_pr.commands import metrics as metrics_command
from hubness_pr.commands.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, run_main
from hubness_pr.errors import CacheMiss, InputError
from hubness_pr.io import summary
from hubness_pr.io.store import load_features
from tests.cli_helpers import assert_one_line_error, call

ROOT = Path(__file__).resolve().parent.parent


def run(*args):
    return call(metrics_command.main, *args)


@pytest.fixture
def sets(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    # (sets large enough for no small-set warning: stderr holds the error line alone)
    np.savez(tmp_path / "real.npz", feature=rng.standard_normal((120, 4)).astype(np.float32))
    np.savez(tmp_path / "fake.npz", feature=rng.standard_normal((110, 4)).astype(np.float32))
    (tmp_path / "bad.npz").write_text("not an array")
    np.savez(tmp_path / "tiny.npz", feature=rng.standard_normal((3, 4)).astype(np.float32))
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- the type ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, line", [
    ({}, "cannot be used"),
    ({"file": "a.npz"}, "a.npz: cannot be used"),
    ({"file": Path("a.npz"), "role": "fake"}, "a.npz (fake): cannot be used"),
    ({"file": "a.npz", "role": "fake", "show_role": False}, "a.npz: cannot be used"),
    ({"role": "fake"}, "cannot be used"),  # a role alone names no file: the command adds it
    ({"option": "--k"}, "--k: cannot be used"),
    ({"option": "--json", "file": "out.json"}, "--json out.json: cannot be used"),
    ({"option": "--device", "value": "cuda:3"}, "--device cuda:3: cannot be used"),
])
def test_each_field_appears_in_the_line(kwargs, line):
    error = InputError("cannot be used", **kwargs)
    assert str(error) == line
    assert isinstance(error, ValueError)  # library callers catching ValueError keep working
    assert error.message == "cannot be used"
    copy = pickle.loads(pickle.dumps(error))  # workers and ranks send it whole
    assert type(copy) is InputError and str(copy) == line and copy.role == error.role


def test_located_fills_only_what_is_missing():
    error = InputError("fake has 3 samples", role="fake")
    located = error.located(file="f.npz", role="real", show_role=False)
    assert (located.file, located.role, str(located)) == ("f.npz", "fake", "f.npz: fake has 3 samples")
    assert InputError("x", file="a").located(file="b").file == "a"


def test_cache_miss_is_not_an_input_error():
    assert not issubclass(CacheMiss, ValueError)


# -- raised where the input is found -------------------------------------------------------------------

def test_the_reader_names_the_file_in_its_field(sets):
    with pytest.raises(InputError) as raised:
        load_features("bad.npz")
    assert raised.value.file == "bad.npz" and str(raised.value) == "bad.npz: not a .npz or .npy array file"
    with pytest.raises(InputError) as raised:
        load_features("missing.npz")
    assert raised.value.file == "missing.npz"


def test_an_object_array_is_refused_from_its_header(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    np.savez(tmp_path / "objects.npz", feature=np.array([{"a": 1}], dtype=object))
    for name in ("objects.npy", "objects.npz"):
        with pytest.raises(InputError, match="holds Python objects") as raised:
            load_features(tmp_path / name)
        assert raised.value.file == str(tmp_path / name)


def test_output_checks_carry_option_and_file(tmp_path):
    from hubness_pr.io.outputs import OutputFiles

    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError) as raised:
        OutputFiles().add(str(tmp_path / "folder"), "--json")
    assert raised.value.option == "--json" and raised.value.file == str(tmp_path / "folder")


@pytest.mark.parametrize("real, fake, blamed, other", [
    ("bad.npz", "fake.npz", "bad.npz", "fake.npz"),
    ("real.npz", "bad.npz", "bad.npz", "real.npz"),
])
def test_the_command_blames_the_file_at_fault(sets, real, fake, blamed, other):
    line = assert_one_line_error(run(real, fake, "--no_cache"), f"{blamed}: not a .npz", status=EXIT_ERROR)
    assert other not in line


@pytest.mark.parametrize("real, fake, line", [
    ("real.npz", "tiny.npz", "tiny.npz: fake has 3 samples; k=3 needs at least 4"),
    ("tiny.npz", "fake.npz", "tiny.npz: real has 3 samples"),
])
def test_a_set_too_small_is_named_by_its_role_not_by_its_text(sets, real, fake, line):
    assert_one_line_error(run(real, fake, "--no_cache"), line, status=EXIT_ERROR)


def test_the_role_field_decides_not_the_first_word(sets, monkeypatch):
    """An engine message whose first word is "real" but whose role is "fake" blames FAKE's file."""
    def evaluate(**kwargs):
        raise InputError("real words, fake set", role="fake")

    monkeypatch.setattr(hubness_pr, "evaluate", evaluate)
    line = assert_one_line_error(run("real.npz", "fake.npz", "--no_cache"), status=EXIT_ERROR)
    assert line.endswith("error: fake.npz: real words, fake set")


# -- the cache miss, by type ---------------------------------------------------------------------------

def test_a_cache_miss_is_a_type(tmp_path):
    features = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32)
    key = summary.SummaryKey.of(features, 3, (3,))
    cache = summary.SummaryCache(tmp_path / "absent")
    with pytest.raises(CacheMiss):
        cache.lookup(key, features)
    graph, message = cache.load(key, features)  # the (graph, message) form stays
    assert graph is None and "no cached" in message
    (tmp_path / "empty").mkdir(mode=0o700)
    with pytest.raises(CacheMiss):
        summary.SummaryCache(tmp_path / "empty").lookup(key, features)


def test_the_command_reads_the_miss_by_type_whatever_its_text(sets, monkeypatch):
    def lookup(self, key, features=None, **check):
        raise CacheMiss("an unusual sentence")

    monkeypatch.setattr(summary.SummaryCache, "lookup", lookup)
    (sets / "cache").mkdir(mode=0o700)
    result = run("real.npz", "fake.npz", "--cache_dir", "cache", "--json", "out.json")
    assert result.returncode == EXIT_OK and result.stderr == ""  # a miss is no warning
    import json
    assert json.loads((sets / "out.json").read_text())["cache"]["real"]["status"] == "computed"


# -- a fault of the toolkit keeps its traceback --------------------------------------------------------

INTERNAL = "internal error (a bug in the toolkit, please report it):"


def assert_internal_error(result, prog, error_line):
    """A fault of the toolkit: status 1, the internal-error line, then the traceback; never the
    one line of bad input (``PROG: error: ...``)."""
    assert result.returncode == EXIT_ERROR, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"{prog}: {INTERNAL}", result.stderr
    assert lines[1] == "Traceback (most recent call last):", result.stderr
    assert lines[-1] == error_line, result.stderr
    assert "error:" not in lines[0]


@pytest.mark.parametrize("error", [ValueError("boom"), TypeError("boom"), RuntimeError("boom"),
                                   FileNotFoundError(2, "No such file or directory")])
def test_an_engine_bug_is_not_hidden_as_bad_input(sets, monkeypatch, error):
    """The engine (``evaluate``) fails with a plain exception, an OSError none of the readers
    wrapped included: the command says it is a bug and shows the traceback."""
    def evaluate(**kwargs):
        raise error

    monkeypatch.setattr(hubness_pr, "evaluate", evaluate)
    result = run("real.npz", "fake.npz", "--no_cache")
    assert_internal_error(result, "improved_precision_recall_hubness.py",
                          "".join(__import__("traceback").format_exception_only(type(error), error)).strip())
    assert result.stdout == ""
    assert not (sets / "out.json").exists()


def test_a_library_function_failing_inside_the_command_keeps_its_traceback(sets, monkeypatch):
    """An engine function the metric command runs (``SetStats.of``, the one read of each set) raises
    ValueError("boom"): a bug, shown with its traceback, not one line of bad input."""
    from hubness_pr.engine.frame import SetStats

    def boom(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(SetStats, "of", boom)
    result = run("real.npz", "fake.npz", "--no_cache", "--metrics", "pr")
    assert_internal_error(result, "improved_precision_recall_hubness.py", "ValueError: boom")
    assert "boom" in result.stderr and "error: boom" not in result.stderr


def test_out_of_memory_is_not_called_a_bug(sets, monkeypatch):
    def evaluate(**kwargs):
        raise MemoryError()

    monkeypatch.setattr(hubness_pr, "evaluate", evaluate)
    result = run("real.npz", "fake.npz", "--no_cache")
    assert result.returncode == EXIT_ERROR
    assert result.stderr.splitlines()[0].startswith("improved_precision_recall_hubness.py: out of memory")
    assert "Traceback" in result.stderr and INTERNAL not in result.stderr


def test_an_engine_bug_in_a_process_exits_1_with_its_traceback(sets):
    """As a process: status 1, the internal-error line and the traceback, not a line posing as bad input."""
    import subprocess
    import sys

    code = ("import sys, hubness_pr\n"
            "def boom(**kwargs): raise ValueError('boom')\n"
            "hubness_pr.evaluate = boom\n"
            "from hubness_pr.commands.metrics import main\n"
            "sys.exit(main(['real.npz', 'fake.npz', '--no_cache']))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=sets, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"improved_precision_recall_hubness.py: {INTERNAL}\nTraceback")
    assert proc.stderr.rstrip().endswith("ValueError: boom")
    assert "error: boom" not in proc.stderr


def test_run_main_maps_input_errors_only(capsys):
    def raising(error):
        def body():
            raise error
        return body

    assert run_main("prog", raising(InputError("bad", option="--k"))) == EXIT_ERROR
    assert capsys.readouterr().err == "prog: error: --k: bad\n"
    wrapped = InputError("cannot append (No space left on device)", option="--log", file="runs.jsonl")
    assert run_main("prog", raising(wrapped)) == EXIT_ERROR
    assert capsys.readouterr().err == "prog: error: --log runs.jsonl: cannot append (No space left on device)\n"
    for fault in (ValueError("boom"), KeyError("boom"), ZeroDivisionError(), OSError(28, "No space left on device"),
                  RuntimeError("boom")):
        assert run_main("prog", raising(fault)) == EXIT_ERROR
        err = capsys.readouterr().err
        assert err.startswith(f"prog: {INTERNAL}\nTraceback (most recent call last):\n"), err
        assert "prog: error:" not in err


def test_run_main_keeps_the_other_exit_codes(capsys):
    from hubness_pr.commands.cli import EXIT_SIGPIPE, StdoutGone
    from hubness_pr.commands.launch import Terminated

    def raising(error):
        def body():
            raise error
        return body

    assert run_main("prog", raising(StdoutGone())) == EXIT_SIGPIPE == 141
    assert capsys.readouterr().err == ""
    assert run_main("prog", raising(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err.startswith("prog: interrupted")
    assert run_main("prog", raising(Terminated())) == 143
    assert capsys.readouterr().err.startswith("prog: terminated")
    assert run_main("prog", raising(ModuleNotFoundError("No module named 'PIL'", name="PIL"))) == EXIT_ERROR
    assert "pip install pillow" in capsys.readouterr().err


def test_stdout_that_cannot_be_written_is_an_input_error(monkeypatch):
    import io

    from hubness_pr.commands.cli import print_results

    class Full(io.StringIO):
        def write(self, text):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr("sys.stdout", Full())
    with pytest.raises(InputError) as raised:
        print_results(["precision: 1"])
    assert raised.value.file == "stdout"
    assert str(raised.value) == "stdout: cannot write the results (No space left on device)"


def test_features_command_keeps_a_fault_traceback(tmp_path, monkeypatch):
    from hubness_pr.commands import features

    np.save(tmp_path / "imgs.npy", np.zeros((2, 8, 8, 3), dtype=np.uint8))

    def extract(path, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(features, "extract_path", extract)
    result = call(features.main, str(tmp_path / "imgs.npy"), "-o", str(tmp_path / "out.npz"), "--device", "cpu")
    assert_internal_error(result, "getFeature.py", "ValueError: boom")

    def bad(path, **kwargs):
        raise InputError("none of the images could be decoded", file=path, role="images")

    monkeypatch.setattr(features, "extract_path", bad)
    result = call(features.main, str(tmp_path / "imgs.npy"), "-o", str(tmp_path / "out.npz"), "--device", "cpu")
    assert_one_line_error(result, "imgs.npy (images): none of the images", status=EXIT_ERROR)


def test_retrieval_command_keeps_a_fault_traceback(tmp_path, monkeypatch):
    from hubness_pr.commands import retrieval

    def load_dataset(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(retrieval, "load_dataset", load_dataset)
    argv = ["--dataset", "mosaic", "--no_save", "--device", "cpu", "--epochs", "1"]
    assert_internal_error(call(retrieval.main, *argv), "retrieval.py", "ValueError: boom")

    def bad(*args, **kwargs):
        raise InputError("not found", option="--data", file="nowhere")

    monkeypatch.setattr(retrieval, "load_dataset", bad)
    assert_one_line_error(call(retrieval.main, *argv), "--data nowhere: not found", status=EXIT_ERROR)


# -- exit codes ----------------------------------------------------------------------------------------

def test_exit_codes_are_unchanged(sets):
    assert run("real.npz", "fake.npz", "--k", "0").returncode == EXIT_USAGE  # argparse
    assert run("real.npz", "missing.npz").returncode == EXIT_ERROR  # bad input
    assert run("real.npz", "fake.npz", "--no_cache").returncode == EXIT_OK


def test_torchrun_step_outside_torchrun_raises_the_error_itself():
    from hubness_pr.commands import torchrun
    from hubness_pr.engine.distributed import SINGLE

    assert torchrun.step(SINGLE, lambda: 7) == 7
    for error in (InputError("bad"), ValueError("boom")):
        with pytest.raises(type(error)) as raised:
            torchrun.step(SINGLE, lambda: (_ for _ in ()).throw(error))
        assert raised.value is error


# -- no code decides by an exception's text ------------------------------------------------------------

TEXT_DECISION = re.compile(r"""(\bif\b.*\bin str\((exc|e|error|err)\))|(str\((exc|e|error|err)\)\s*\.\s*(startswith|endswith)\()"""
                           r"""|(str\((exc|e|error|err)\)\.split\(["' ])|message\.startswith\(""")


def test_no_module_decides_by_an_exception_message():
    hits = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
            for path in sorted((ROOT / "hubness_pr").rglob("*.py"))
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if TEXT_DECISION.search(line)]
    assert not hits, "\n".join(hits)


# -- fields set where the input is found wanting -------------------------------------------------------

def test_feature_arrays_are_refused_with_their_role_and_file():
    import torch

    from hubness_pr.engine.inputs import as_feature_matrix
    from hubness_pr.errors import InputTypeError

    bad = np.ones((3, 2), np.float32)
    bad[1, 0] = np.nan
    with pytest.raises(InputError) as raised:
        as_feature_matrix(bad, "fake")
    assert (raised.value.role, raised.value.file, str(raised.value)) == ("fake", None,
                                                                         "fake: row 1 contains NaN or Inf values")
    with pytest.raises(InputError) as raised:
        as_feature_matrix(bad, "fake", file="f.npz")
    assert (raised.value.role, raised.value.file, str(raised.value)) == ("fake", "f.npz",
                                                                         "f.npz (fake): row 1 contains NaN or Inf values")
    for wrong in (None, torch.zeros((2, 2), dtype=torch.bfloat16)):
        with pytest.raises(InputTypeError) as raised:  # an InputError for the commands, a TypeError for callers
            as_feature_matrix(wrong, "real")
        assert isinstance(raised.value, TypeError) and raised.value.role == "real"


def test_a_device_that_is_not_here_names_the_option_and_value(monkeypatch):
    import torch

    from hubness_pr.commands.cli import check_device
    from hubness_pr.engine.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError) as raised:
        resolve_device("cuda:1")
    assert raised.value.role == "device"
    with pytest.raises(InputError) as raised:
        check_device("cuda:1")
    assert (raised.value.option, raised.value.value) == ("--device", "cuda:1")
    assert str(raised.value).startswith("--device cuda:1: device 'cuda:1' was requested but CUDA is not available")


def test_os_errors_of_user_files_are_wrapped_with_the_file(tmp_path):
    from hubness_pr.extraction.images import open_source, read_image_file
    from hubness_pr.reports.runlog import read_runs

    folder = tmp_path / "images"
    folder.mkdir()
    for call_, target in ((load_features, folder), (read_image_file, folder), (read_runs, tmp_path / "none.jsonl"),
                          (open_source, tmp_path / "missing")):
        with pytest.raises(InputError) as raised:
            call_(target)
        assert raised.value.file == str(target), (call_, str(raised.value))
        assert str(raised.value).startswith(f"{target}: ")


def test_a_bad_image_keeps_its_file_through_the_worker_processes(tmp_path):
    from hubness_pr.extraction.extract import _Prepared, _collate
    from hubness_pr.extraction.images import open_source

    folder = tmp_path / "f"
    folder.mkdir()
    from PIL import Image
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "a.png")
    (folder / "b.png").write_bytes(b"\x89PNG not really")
    source = open_source(folder)
    import torch

    dataset = _Prepared(source, torch.from_numpy, 0, 2)
    indices, _, errors = _collate([dataset[0], dataset[1]])
    assert indices == [0] and len(errors) == 1
    index, error = errors[0]
    assert index == 1 and isinstance(error, InputError) and error.file.endswith("b.png")
    assert pickle.loads(pickle.dumps(error)).file == error.file  # from a worker process


def test_a_fault_in_the_image_preparation_is_not_taken_for_a_bad_image(tmp_path):
    from hubness_pr.extraction.extract import _Prepared
    from hubness_pr.extraction.images import open_source

    folder = tmp_path / "f"
    folder.mkdir()
    from PIL import Image
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "a.png")

    def prepare(image):
        raise ValueError("boom")  # a bug in a backbone's preprocessing, not a bad image

    with pytest.raises(ValueError, match="boom"):
        _Prepared(open_source(folder), prepare, 0, 1)[0]
