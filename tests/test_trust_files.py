"""Hostile files and interruptions get one line and leave nothing behind (issue 17, section 3): deeply
nested JSON in a sidecar, an npz ``meta`` or a run log line; sidecar paths that are not strings; run
log lines that are not run records; a ``--log`` append that fails after the outputs were put in place;
SIGTERM; a missing dependency; output options that name no file."""
import errno
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from hubness_pr.commands.cli import run_main
from hubness_pr.commands.launch import missing_package
from hubness_pr.io.outputs import OutputFiles, check_output_path
from hubness_pr.io.store import JSON_DEPTH, load_features, parse_json
from hubness_pr.reports import runlog
from hubness_pr.commands.metrics import main
from hubness_pr.commands.features import existing_features
from hubness_pr.commands.features import main as extract_main
from tests.cli_helpers import FEATURES_SCRIPT, METRICS_SCRIPT, assert_one_line_error, call
from tests.test_runlog import run_record

# JSON nested past the limit in every way a file can: lists, objects, both, far past the parser's own
# recursion limit (json raises RecursionError there, not ValueError), and one level past the limit
NESTED = {
    "lists_100000": "[" * 100000 + "]" * 100000,
    "objects_50000": '{"a":' * 50000 + "1" + "}" * 50000,
    "mixed_3000": '[{"a":' * 1500 + "null" + "}]" * 1500,
    "just_past_the_limit": "[" * (JSON_DEPTH + 1) + "]" * (JSON_DEPTH + 1),
}


def nested_inside(text: str) -> str:
    """``text`` as the value of a key of an object, as it would sit in a sidecar or a meta."""
    return '{"meta": ' + text + "}"


@pytest.fixture
def sets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(7)
    real = rng.standard_normal((120, 4)).astype(np.float32)
    fake = rng.standard_normal((110, 4)).astype(np.float32) + 0.3
    np.savez("real.npz", feature=real)
    return real, fake


def run_pr(fake_name):
    return call(main, "real.npz", fake_name, "--metrics", "pr")


def reference_stdout(fake):
    np.save("plain.npy", fake)
    proc = run_pr("plain.npy")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout.splitlines()[:-1]  # all but "seconds: ..."


def test_parse_json_accepts_the_limit_and_refuses_deeper():
    deepest = parse_json("[" * JSON_DEPTH + "]" * JSON_DEPTH)
    for _ in range(JSON_DEPTH - 1):
        assert isinstance(deepest, list) and len(deepest) == 1
        deepest = deepest[0]
    assert deepest == []
    assert parse_json('{"a": [1, {"b": "c"}]}') == {"a": [1, {"b": "c"}]}
    for text in (*NESTED.values(), nested_inside(NESTED["lists_100000"])):
        with pytest.raises(ValueError, match=f"nested more than {JSON_DEPTH} levels deep"):
            parse_json(text)


@pytest.mark.parametrize("kind", sorted(NESTED))
@pytest.mark.parametrize("where", ["whole", "meta"])
def test_nested_sidecar_is_one_warning_and_the_run_goes_on(sets, kind, where):
    _, fake = sets
    expected = reference_stdout(fake)
    np.save("fake.npy", fake)
    with open("fake.npy.json", "w") as handle:
        handle.write(NESTED[kind] if where == "whole" else nested_inside(NESTED[kind]))
    proc = run_pr("fake.npy")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [f"fake.npy.json: unreadable sidecar (JSON nested more than {JSON_DEPTH} "
                                        "levels deep); paths and meta ignored"], proc.stderr
    assert proc.stdout.splitlines()[:-1] == expected
    # getFeature.py, about to replace such a file, reads it too: no traceback, and no backbone read from it
    assert existing_features("fake.npy", "npy") in (None, (110, None))


@pytest.mark.parametrize("kind", sorted(NESTED))
def test_nested_npz_meta_is_one_warning_and_the_run_goes_on(sets, kind):
    _, fake = sets
    expected = reference_stdout(fake)
    for name, meta in (("fake.npz", NESTED[kind]), ("inside.npz", nested_inside(NESTED[kind]))):
        np.savez(name, feature=fake, meta=np.array(meta))
        proc = run_pr(name)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.splitlines() == [f"{name}: 'meta' is not a JSON object (JSON nested more than "
                                            f"{JSON_DEPTH} levels deep); ignored"], proc.stderr
        assert proc.stdout.splitlines()[:-1] == expected
        assert existing_features(name, "npz") in (None, (110, None))


@pytest.mark.parametrize("entry, kind", [(7, "a number"), (2.5, "a number"), (None, "null"), (True, "a boolean"),
                                         (["a.png"], "a list"), ([[["x"]]], "a list"), ({"p": "a.png"}, "an object")])
@pytest.mark.parametrize("position", [0, 57, 109])
def test_sidecar_paths_that_are_not_strings_are_one_line_naming_the_sidecar(sets, entry, kind, position):
    _, fake = sets
    np.save("fake.npy", fake)
    paths = [f"img/{i:03d}.png" for i in range(110)]
    paths[position] = entry
    with open("fake.npy.json", "w") as handle:
        json.dump({"paths": paths, "meta": {"backbone": "vgg16"}}, handle)
    assert_one_line_error(run_pr("fake.npy"), f"error: fake.npy.json: 'paths' entry {position} is {kind}, "
                          "expected a string", status=1)
    with pytest.raises(ValueError, match=f"fake.npy.json: 'paths' entry {position} is {kind}"):
        load_features("fake.npy")


def test_sidecar_paths_of_strings_are_read(sets):
    _, fake = sets
    np.save("fake.npy", fake)
    paths = [f"img/{i:03d}.png" for i in range(110)]
    with open("fake.npy.json", "w") as handle:
        json.dump({"paths": paths, "meta": {"backbone": "vgg16"}}, handle)
    data = load_features("fake.npy")
    assert data.paths == paths and data.meta == {"backbone": "vgg16"}


def record_line(**changes) -> str:
    return json.dumps(run_record(**changes))


@pytest.mark.parametrize("kind", sorted(NESTED))
def test_nested_log_line_is_skipped_with_a_warning(tmp_path, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    lines = [record_line(), NESTED[kind], record_line(metrics={"pr": {"precision": 0.75}}),
             nested_inside(NESTED[kind])]
    (tmp_path / "runs.jsonl").write_text("\n".join(lines) + "\n")
    proc = call(main, "compare", "runs.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [f"runs.jsonl: 2 line(s) are not run records, skipped (line 2, 4; line 2: "
                                        f"not JSON (JSON nested more than {JSON_DEPTH} levels deep))"]
    rows = proc.stdout.splitlines()[1:]
    assert [row.split()[:3] for row in rows] == [["1", "fake.npz", "0.5000"], ["3", "fake.npz", "0.7500"]]
    runs, bad = runlog.read_runs("runs.jsonl")
    assert [n for n, _ in runs] == [1, 3] and [n for n, _ in bad] == [2, 4]


def without(key):
    record = run_record()
    del record[key]
    return json.dumps(record)


# lines of JSON that are not run records: the wrong kind of value, a record without one of its keys,
# a key holding the wrong kind of value, garbage nested inside, a line that is not UTF-8
NOT_RECORDS = {
    "list": ("[1, 2, 3]", "a list, not an object"),
    "string": ('"precision: 0.5"', "a string, not an object"),
    "number": ("0.5", "a number, not an object"),
    "null": ("null", "null, not an object"),
    "other_object": ('{"precision": 0.5, "recall": 0.25}', "no key 'time'"),
    **{f"no_{key}": (without(key), f"no key {key!r}") for key in runlog.RECORD_KEYS},
    "metrics_list": (record_line(metrics=[0.5]), "'metrics' is a list, expected an object"),
    "metrics_number": (record_line(metrics=0.5), "'metrics' is a number, expected an object"),
    "metrics_null": (record_line(metrics=None), "'metrics' is null, expected an object"),
    "metric_block_number": (record_line(metrics={"pr": 0.5}), "metric block 'pr' is a number, expected an object"),
    "params_list": (record_line(params=[3]), "'params' is a list, expected an object"),
    "inputs_string": (record_line(inputs="real.npz"), "'inputs' is a string, expected an object"),
    "inputs_without_fake": (record_line(inputs={"real": {"path": "r.npz"}}), "'inputs' has no fake input"),
    "input_path_nested": (record_line(inputs={"real": {"path": "r.npz"}, "fake": {"path": [["f"]]}}),
                          "'inputs' has no fake input with a path"),
    "versions_string": (record_line(versions="0.2"), "'versions' is a string, expected an object"),
    "timings_list": (record_line(timings=[1]), "'timings' is a list, expected an object"),
    "seconds_string": (record_line(seconds="1.5"), "'seconds' is a string, expected a number"),
    "seconds_boolean": (record_line(seconds=True), "'seconds' is a boolean, expected a number"),
    "time_number": (record_line(time=1714557600), "'time' is a number, expected a string"),
    "argv_string": (record_line(argv="real.npz fake.npz"), "'argv' is a string, expected a list"),
    "argv_nested": (record_line(argv=[["real.npz"], {"a": [1]}]), "'argv' holds something other than strings"),
    "nested_garbage": ('{"metrics": ' + "[" * 50 + "]" * 50 + "}", "no key 'time'"),
    "not_json": ("precision: 0.5", "not JSON (Expecting value"),
}


@pytest.mark.parametrize("name", sorted(NOT_RECORDS))
def test_a_line_that_is_not_a_run_record_is_skipped_with_a_warning(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    line, why = NOT_RECORDS[name]
    assert runlog.record_problem(run_record()) is None
    lines = [record_line(), line, record_line(metrics={"pr": {"precision": 0.75}})]
    (tmp_path / "runs.jsonl").write_text("\n".join(lines) + "\n")
    proc = call(main, "compare", "runs.jsonl", "--csv", "t.csv", "--plot", "t.png")
    assert proc.returncode == 0, proc.stderr
    warning = proc.stderr.splitlines()
    assert len(warning) == 1 and warning[0].startswith(
        f"runs.jsonl: 1 line(s) are not run records, skipped (line 2; line 2: {why}"), proc.stderr
    rows = proc.stdout.splitlines()[1:]
    assert [row.split()[:3] for row in rows] == [["1", "fake.npz", "0.5000"], ["3", "fake.npz", "0.7500"]]
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 3 and (tmp_path / "t.png").stat().st_size > 0


def test_a_line_that_is_not_utf8_is_skipped_and_a_log_of_none_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs.jsonl").write_bytes(record_line().encode() + b"\n\xff\xfe{}\n" + record_line().encode() + b"\n")
    proc = call(main, "compare", "runs.jsonl")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 3, proc.stderr
    assert proc.stderr.strip() == "runs.jsonl: 1 line(s) are not run records, skipped (line 2; line 2: not UTF-8 text)"
    (tmp_path / "bad.jsonl").write_text("\n".join(line for line, _ in NOT_RECORDS.values()) + "\n")
    assert_one_line_error(call(main, "compare", "bad.jsonl", "-q"), "bad.jsonl: no run records", status=1)


def test_extra_keys_are_allowed_and_columns_that_are_not_numbers_are_not_drawn(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = [record_line(note="later versions may add keys"),
             record_line(metrics={"pr": {"precision": 0.75, "method": "exact"}})]
    (tmp_path / "runs.jsonl").write_text("\n".join(lines) + "\n")
    proc = call(main, "compare", "runs.jsonl", "--columns", "pr.method,pr.precision")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert [row.split()[:4] for row in proc.stdout.splitlines()[1:]] == [["1", "fake.npz", "-", "0.5000"],
                                                                        ["2", "fake.npz", "exact", "0.7500"]]
    for columns, culprit in (("pr.method,pr.precision", "'pr.method' of run 2 is a string"),
                             ("pr", "'pr' of run 1 is an object")):
        assert_one_line_error(call(main, "compare", "runs.jsonl", "--columns", columns, "--plot", "t.png"),
                              f"--plot: column {culprit}, not a number", status=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.jsonl"]


# --------------------------------------------------------------- a --log append that fails (disk full)

def snapshot(folder):
    """Every file under ``folder`` (relative name: bytes), links as links."""
    found = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        found[name] = f"-> {os.readlink(path)}" if path.is_symlink() else None if path.is_dir() else path.read_bytes()
    return found


@pytest.mark.parametrize("existing", ["replaced", "new"])
def test_a_log_append_that_fails_puts_the_run_outputs_back(sets, tmp_path, monkeypatch, existing):
    _, fake = sets
    np.savez("fake.npz", feature=fake)
    with open("runs.jsonl", "w") as handle:
        handle.write(record_line() + "\n")
    if existing == "replaced":
        for name in ("r.json", "r.csv", "r.png"):
            (tmp_path / name).write_text(f"the previous run's {name}")
        os.mkdir("results")
        os.symlink("results/target.csv", "r.csv.link")
        (tmp_path / "results" / "target.csv").write_text("the link's target")
    before = snapshot(tmp_path)
    real_write, seen = os.write, {}

    def disk_full(fd, data):  # the log's write: by then the other files are in place
        seen["json"] = (tmp_path / "r.json").read_text()
        seen["gallery"] = sorted(os.listdir(tmp_path / "gallery"))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", disk_full)
    args = ["real.npz", "fake.npz", "--json", "r.json", "--per_sample", "r.csv", "--plot", "r.png",
            "--gallery", "gallery", "--log", "runs.jsonl", "-q"]
    if existing == "replaced":
        args[args.index("r.csv")] = "r.csv.link"
    line = assert_one_line_error(call(main, *args), "error: --log runs.jsonl: cannot append (No space left on "
                                 "device); ", " put back as they were", status=1)
    monkeypatch.setattr(os, "write", real_write)
    assert json.loads(seen["json"])["params"]["k"] == 3 and "gallery.csv" in seen["gallery"]  # were in place
    for name in ("r.json", "r.png", "r.csv.link" if existing == "replaced" else "r.csv", "gallery/gallery.csv"):
        assert name in line
    assert snapshot(tmp_path) == before  # contents, links; no gallery folder, no .tmp or .old file left


def test_log_to_a_full_device_puts_the_run_outputs_back(sets, tmp_path):
    _, fake = sets
    np.savez("fake.npz", feature=fake)
    (tmp_path / "r.json").write_text("old")
    assert_one_line_error(call(main, "real.npz", "fake.npz", "--json", "r.json", "--per_sample", "r.csv",
                               "--log", "/dev/full", "-q"),
                          "error: --log /dev/full: cannot append (No space left on device); "
                          "r.json, r.csv put back as they were", status=1)
    assert sorted(os.listdir(tmp_path)) == ["fake.npz", "r.json", "real.npz"]
    assert (tmp_path / "r.json").read_text() == "old"


def test_a_log_append_that_fails_names_what_was_written_directly(sets, tmp_path):
    _, fake = sets
    np.savez("fake.npz", feature=fake)
    line = assert_one_line_error(call(main, "real.npz", "fake.npz", "--json", "r.json", "--per_sample", "/dev/null",
                                      "--log", "/dev/full", "-q"), status=1)
    assert line.endswith("cannot append (No space left on device); r.json put back as they were; written directly "
                         "before the failure: /dev/null")
    assert sorted(os.listdir(tmp_path)) == ["fake.npz", "real.npz"]


# ------------------------------------------------------------------ a dependency that is not installed

WITHOUT = '''"""python without.py MOD[,MOD] SCRIPT ARGS...: SCRIPT run as if the packages MOD were not installed
(every finder on sys.meta_path finds nothing for them, as in an environment that lacks them)."""
import os
import runpy
import sys

BLOCKED = set(sys.argv[1].split(","))


class Without:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None
        return self.finder.find_spec(name, path, target)


sys.meta_path[:] = [Without(finder) for finder in sys.meta_path]
sys.argv = sys.argv[2:]
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
'''


def run_without(tmp_path, blocked, script, *args):
    (tmp_path / "without.py").write_text(WITHOUT)
    return subprocess.run([sys.executable, str(tmp_path / "without.py"), blocked, str(script), *map(str, args)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("blocked, package, options", [
    ("numpy", "numpy", []),  # imported by the command module itself, before main()
    ("torch", "torch", []),
    ("PIL", "pillow", []),
    ("tqdm", "tqdm", []),
    ("matplotlib", "matplotlib", ["--plot", "p.png"]),
])
def test_a_missing_package_is_one_line_naming_it_and_its_install_command(sets, tmp_path, blocked, package, options):
    _, fake = sets
    np.savez("fake.npz", feature=fake)
    proc = run_without(tmp_path, blocked, METRICS_SCRIPT, "real.npz", "fake.npz", "--json", "r.json", *options)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [
        f"improved_precision_recall_hubness.py: error: needs the package '{package}', which is not installed "
        f"(no module '{blocked}'): pip install {package}, or pip install -r requirements.txt in the toolkit's folder"]
    assert proc.stdout == "" and sorted(os.listdir(tmp_path)) == ["fake.npz", "real.npz", "without.py"]


def test_a_missing_package_in_extraction_is_one_line(tmp_path):
    np.save(tmp_path / "imgs.npy", np.zeros((2, 32, 32, 3), np.uint8))
    proc = run_without(tmp_path, "PIL", FEATURES_SCRIPT, "imgs.npy", "-o", "out.npz", "--backbone",
                       "efficientnet_lite0")
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        "getFeature.py: error: needs the package 'pillow', which is not installed (no module 'PIL'): pip install "
        "pillow, or pip install -r requirements.txt in the toolkit's folder"], proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["imgs.npy", "without.py"]


def test_which_import_errors_become_one_line():
    assert "'scikit-learn'" in missing_package(ModuleNotFoundError("no", name="sklearn"))
    assert "'faiss-cpu'" in missing_package(ModuleNotFoundError("no", name="faiss"))
    assert missing_package(ModuleNotFoundError("no", name="numpy._core._missing")) == (
        "the package 'numpy' is incomplete (no module 'numpy._core._missing'): pip install --force-reinstall numpy")
    for own in ("hubness.nothing", "features", "hyp2.gone"):  # the toolkit's own modules: a bug, keeps its traceback
        assert missing_package(ModuleNotFoundError("no", name=own)) is None
    assert missing_package(ImportError("libGL.so.1: cannot open shared object file", name="cv2")) is None
    assert missing_package(ModuleNotFoundError("no name")) is None

    def body():
        raise ModuleNotFoundError("No module named 'hubness.nothing'", name="hubness.nothing")

    with pytest.raises(ModuleNotFoundError):
        run_main("prog", body)


# ------------------------------------------------------------- output options that name no file

OUTPUT_OPTIONS = [  # (command, argv before the option, the option as given, the name argparse gives it)
    (main, ["real.npz", "fake.npz"], "--json", "--json"),
    (main, ["real.npz", "fake.npz"], "--per_sample", "--per_sample/--per-sample"),
    (main, ["real.npz", "fake.npz"], "--plot", "--plot"),
    (main, ["real.npz", "fake.npz"], "--log", "--log"),
    (main, ["compare", "runs.jsonl"], "--csv", "--csv"),
    (main, ["compare", "runs.jsonl"], "--plot", "--plot"),
    (extract_main, ["imgs.npy"], "-o", "--fname_precalc/--fname-precalc/-o"),
    (extract_main, ["imgs.npy"], "--fname_precalc", "--fname_precalc/--fname-precalc/-o"),
]


@pytest.fixture
def option_inputs(sets, tmp_path):
    _, fake = sets
    np.savez("fake.npz", feature=fake)
    np.save("imgs.npy", np.zeros((2, 32, 32, 3), np.uint8))
    (tmp_path / "runs.jsonl").write_text(record_line() + "\n")
    os.mkdir("existing")
    return tmp_path


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("command, before, option, shown", OUTPUT_OPTIONS)
@pytest.mark.parametrize("value, problem", [
    ("", "expected a file path, got an empty one"),
    ("newdir/", "'newdir/' is a folder path, expected a file path"),
    ("existing/", "'existing/' is a folder path, expected a file path"),
    ("existing//", "'existing//' is a folder path, expected a file path"),
    (".", "'.' is a folder path, expected a file path"),
    ("existing/..", "'existing/..' is a folder path, expected a file path"),
])
def test_an_output_option_that_names_no_file_is_a_usage_error_naming_it(option_inputs, command, before, option,
                                                                         shown, value, problem):
    made = listing(option_inputs)
    assert_one_line_error(call(command, *before, option, value), f"error: argument {shown}: {problem}", status=2)
    assert listing(option_inputs) == made  # no file named newdir, nothing else


@pytest.mark.parametrize("command, before, option, shown", OUTPUT_OPTIONS)
def test_an_output_option_naming_an_existing_folder_is_one_line_naming_it(option_inputs, command, before, option,
                                                                           shown):
    made = listing(option_inputs)
    folder = "existing.npz" if command is extract_main else "existing"
    os.rename("existing", folder)
    named = "--fname_precalc" if option == "-o" else option  # (the command names the option by its main name)
    assert_one_line_error(call(command, *before, option, folder), f"error: {named} {folder}: is a folder, expected a "
                          "file path", status=1)
    os.rename(folder, "existing")
    assert listing(option_inputs) == made


def test_an_empty_gallery_folder_is_a_usage_error(option_inputs):
    assert_one_line_error(call(main, "real.npz", "fake.npz", "--gallery", ""),
                          "error: argument --gallery: expected a folder path, got an empty one", status=2)


def test_an_output_of_folder_form_is_refused_by_the_output_check_too(tmp_path):
    for path in (f"{tmp_path}/new/", f"{tmp_path}/.", f"{tmp_path}/a/.."):
        with pytest.raises(ValueError, match=f"^--json {re.escape(path)}: is a folder path, expected a file path$"):
            OutputFiles().add(path, "--json")
        with pytest.raises(ValueError, match="is a folder path"):
            check_output_path(path, "-o")
    assert os.listdir(tmp_path) == []
