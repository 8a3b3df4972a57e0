"""The run log (``--log FILE.jsonl``) and its comparison table (``hubness-pr compare FILE.jsonl``).

One JSON object a line, one line a run, appended: :data:`RECORD_KEYS` are its keys. A line is
appended with a single ``write`` of the whole line on a file opened with ``O_APPEND`` while holding
an exclusive ``flock`` (runs that log to the same file at the same time take turns). A write that
falls short (disk full) is cut back off, so the log never keeps half a line; a file that already
ends without a newline (written by something else) gets one before the new line. Reading skips
lines that are not run records (:func:`record_problem`) and says which and why.

The log is not one of the files the run puts in place together (:class:`hubness_pr.io.outputs.OutputFiles`
replaces a file by renaming a new one over it, which would lose the lines of runs that append at
the same time): it is checked with them before any work, and its line is appended as the last step
of their commit (:meth:`~hubness_pr.io.outputs.OutputFiles.on_commit`), once they are in place; an append
that fails (disk full) puts them back as they were. So a line in the log means the run's other
outputs were written, and a run that could not log changed none of its files (bar a device, FIFO
or stdout written directly, which the error line names).
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import errno
import fcntl
import json
import math
import os
import platform
import stat

from dataclasses import dataclass

import numpy as np

from hubness_pr.errors import InputError
from hubness_pr.io.store import feature_digest, json_kind, parse_json
from hubness_pr.reports.cells import format_cell

RECORD_KEYS = ("time", "argv", "inputs", "params", "versions", "metrics", "timings", "seconds")
# what each key of a run record holds (a line of another shape is not a run record: read_runs skips it)
RECORD_TYPES = {"time": (str, "a string"), "argv": (list, "a list"), "inputs": (dict, "an object"),
                "params": (dict, "an object"), "versions": (dict, "an object"), "metrics": (dict, "an object"),
                "timings": (dict, "an object"), "seconds": ((int, float), "a number")}
DEFAULT_COLUMNS = ("epr.precision", "epr.recall", "pr.precision", "pr.recall", "dc.density", "dc.coverage",
                   "realism.mean", "hubness.fake.skewness", "fd.value", "kid.value", "cmmd.value",
                   "auth.authpct", "auth.copy_fraction", "ct.value", "protocol.precision", "protocol.recall")
VARYING_PARAMS = ("k", "dc_k", "hubsK", "num_samples", "seed", "protocol.name")
# metrics that are means over the real samples: their per-sample flags (``real_flags`` of a record)
# pair up between two runs on the same real features
PAIRED_COLUMNS = ("pr.recall", "dc.coverage")
SIGNIFICANCE_COLUMN = "beyond_2se"


def versions() -> dict:
    import torch

    from hubness_pr.version import __version__

    return {"toolkit": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def input_record(data, features: np.ndarray) -> dict:
    """What the log says of one input: path, sizes, digest of the features evaluated (float32: a
    memory-mapped float64 or big-endian ``.npy`` is evaluated converted, block by block)."""
    record = {"path": data.source, "n": int(features.shape[0]), "dim": int(features.shape[1]),
              "dtype": "float32", "sha256": feature_digest(features, np.float32)}
    if data.key == "(images)":
        record["images"] = True
    else:
        record["key"] = data.key
        with contextlib.suppress(OSError):
            record["file_bytes"] = os.path.getsize(data.source)
    if isinstance(data.meta, dict) and data.meta.get("backbone"):
        record["backbone"] = data.meta["backbone"]
    return record


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def append_line(output, record: dict) -> None:
    """Append ``record`` as one JSON line to the file of ``output`` (a :class:`hubness_pr.io.outputs.Output`,
    checked when the run started); ValueError naming the option and file if it cannot be."""
    data = (json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")
    target = output.requested if output.direct else str(output.path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | (0 if output.direct else os.O_CREAT), 0o666)
    except OSError as exc:
        raise _cannot_append(output, exc) from exc
    try:
        with contextlib.suppress(OSError):  # a file system without locks: runs may interleave whole lines
            fcntl.flock(fd, fcntl.LOCK_EX)
        st = os.fstat(fd)
        regular = stat.S_ISREG(st.st_mode)
        if regular and st.st_size and _last_byte(target, st.st_size) not in (b"\n", None):
            data = b"\n" + data  # never continue a line something else left unfinished
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"only {written} of {len(data)} bytes written")
            if regular:
                os.fsync(fd)
        except OSError:
            if regular:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, st.st_size)  # under the lock: the file as it was
            raise
    except OSError as exc:
        raise _cannot_append(output, exc) from exc
    finally:
        os.close(fd)


def _last_byte(path: str, size: int) -> bytes | None:
    """The file's last byte, or None when it cannot be read (a write-only log)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.pread(fd, 1, size - 1)
    finally:
        os.close(fd)


def _cannot_append(output, exc: OSError) -> InputError:
    return InputError(option=output.option, file=output.requested, message=f"cannot append ({exc.strerror or exc})")


def record_problem(record) -> str | None:
    """Why ``record`` (a parsed log line) is not a run record, or None where it is one: an object with
    every key of :data:`RECORD_KEYS`, each holding what :data:`RECORD_TYPES` says (other keys are
    allowed), ``argv`` a list of strings, ``inputs`` with ``real`` and ``fake`` objects that have a
    string ``path``, and each metric block an object."""
    if not isinstance(record, dict):
        return f"{json_kind(record)}, not an object"
    for key in RECORD_KEYS:
        if key not in record:
            return f"no key {key!r}"
        types, expected = RECORD_TYPES[key]
        if isinstance(record[key], bool) or not isinstance(record[key], types):
            return f"{key!r} is {json_kind(record[key])}, expected {expected}"
    if not all(isinstance(word, str) for word in record["argv"]):
        return "'argv' holds something other than strings"
    for side in ("real", "fake"):
        entry = record["inputs"].get(side)
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            return f"'inputs' has no {side} input with a path"
    for block, value in record["metrics"].items():
        if not isinstance(value, dict):
            return f"metric block {block!r} is {json_kind(value)}, expected an object"
    return None


def read_runs(path) -> tuple[list[tuple[int, dict]], list[tuple[int, str]]]:
    """The run records of a log: ([(line number, record)], [(line number, why it is not a run record)])."""
    runs, bad, text = [], [], False
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    bad.append((number, "not UTF-8 text"))
                    continue
                text = True
                if not line.strip():
                    continue
                try:
                    record = parse_json(line)
                except ValueError as exc:
                    bad.append((number, f"not JSON ({str(exc).splitlines()[0][:120]})"))
                    continue
                problem = record_problem(record)
                if problem is None:
                    runs.append((number, record))
                else:
                    bad.append((number, problem))
    except FileNotFoundError:
        raise InputError(file=path, message="no such file") from None
    except IsADirectoryError:
        raise InputError(file=path, message="is a folder, not a run log (.jsonl)") from None
    except OSError as exc:
        raise InputError(file=path, message=f"cannot read ({exc.strerror or exc})") from exc
    if bad and not text:  # no line of it is text
        raise InputError(file=path, message="not a text file, not a run log (.jsonl)")
    return runs, bad


def lookup(block: dict, dotted: str):
    value = block
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _name(path) -> str:
    return os.path.basename(str(path).rstrip("/")) or str(path)


def comparison(runs: list[tuple[str, dict]], columns=None, base: int = 0) -> tuple[list[str], list[list], list[str]]:
    """(header, rows, metric columns) of the comparison table, one row per run (label, record).

    Columns: ``run``, ``fake``; ``real``, each parameter of :data:`VARYING_PARAMS` and ``knn`` (exact or
    hnsw hub selection) only where they differ between the runs; the metric columns (``columns``, dotted names as the command prints
    them; by default those of :data:`DEFAULT_COLUMNS` that some run has); :data:`SIGNIFICANCE_COLUMN`
    (:func:`significance` against run ``base``, a row index) where some difference could be tested;
    ``seconds`` and ``time``. Missing values are None.
    """
    header, getters = ["run", "fake"], [lambda label, r: label, lambda label, r: _name(lookup(r, "inputs.fake.path"))]
    reals = {(lookup(r, "inputs.real.path"), lookup(r, "inputs.real.sha256")) for _, r in runs}
    if len(reals) > 1:
        header.append("real")
        getters.append(lambda label, r: _name(lookup(r, "inputs.real.path")))
    for param in VARYING_PARAMS:
        if len({json.dumps(lookup(r, f"params.{param}")) for _, r in runs}) > 1:
            header.append(param)
            getters.append(lambda label, r, p=param: lookup(r, f"params.{p}"))
    if len({lookup(r, "params.knn.method") or "exact" for _, r in runs}) > 1:  # approximate hub selection
        header.append("knn")
        getters.append(lambda label, r: lookup(r, "params.knn.method") or "exact")
    if columns is None:
        columns = [c for c in DEFAULT_COLUMNS if any(lookup(r["metrics"], c) is not None for _, r in runs)]
    for column in columns:
        header.append(column)
        getters.append(lambda label, r, c=column: lookup(r["metrics"], c))
    cells, found = significance(runs, list(columns), base)
    if any(found):
        header.append(SIGNIFICANCE_COLUMN)
        getters.append(lambda label, r, by_label=dict(zip((lb for lb, _ in runs), cells)): by_label[label])
    header += ["seconds", "time"]
    getters += [lambda label, r: r.get("seconds"), lambda label, r: r.get("time")]
    return header, [[get(label, record) for get in getters] for label, record in runs], list(columns)


def table_lines(header: list[str], rows: list[list]) -> list[str]:
    """The table as aligned text lines: text columns to the left, numbers to the right."""
    cells = [[format_cell(v, digits=4) for v in row] for row in rows]
    widths = [max([len(h)] + [len(row[j]) for row in cells]) for j, h in enumerate(header)]
    numeric = [all(isinstance(row[j], (int, float)) or row[j] is None for row in rows) for j in range(len(header))]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    return [line(header)] + [line(row) for row in cells]


def pack_flags(flags: np.ndarray) -> dict:
    """Per-sample 0/1 flags as a small JSON object: ``{"n": n, "bits": base64 of numpy.packbits}``
    (n / 8 bytes: 10,000 real samples take 1,668 characters)."""
    flags = np.asarray(flags, dtype=bool)
    return {"n": int(flags.size), "bits": base64.b64encode(np.packbits(flags).tobytes()).decode("ascii")}


def unpack_flags(entry) -> np.ndarray | None:
    """The flags of :func:`pack_flags` (bool (n,)), or None where ``entry`` is not such an object."""
    if not isinstance(entry, dict) or not isinstance(entry.get("n"), int) or not isinstance(entry.get("bits"), str):
        return None
    try:
        raw = np.frombuffer(base64.b64decode(entry["bits"], validate=True), dtype=np.uint8)
    except (binascii.Error, ValueError):
        return None
    n = entry["n"]
    if n < 0 or raw.size != (n + 7) // 8:
        return None
    return np.unpackbits(raw, count=n).astype(bool)


@dataclass(frozen=True)
class Difference:
    """A run's value of one metric minus the baseline's, its standard error, ``z = diff / se`` and
    the test: ``paired`` (the per-real-sample flags of both runs on the same real features),
    ``splits`` (both runs' ``--splits`` standard errors) or ``two-sample`` (both conditional
    standard errors)."""

    column: str
    diff: float
    se: float
    test: str

    @property
    def z(self) -> float:
        if self.se > 0:
            return self.diff / self.se
        return 0.0 if self.diff == 0 else math.copysign(math.inf, self.diff)

    @property
    def beyond(self) -> bool:
        """Whether |diff| > 2 standard errors."""
        return abs(self.z) > 2


def _entry(record: dict, *keys):
    """``record[keys[0]][keys[1]]...`` where each level is an object (keys may hold dots), else None."""
    value = record
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _number(value) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def difference(run: dict, base: dict, column: str) -> Difference | None:
    """``run``'s value of ``column`` (a dotted metric name) against ``base``'s (two run records), or
    None where one lacks the value or every standard error of it. Paired where both runs read the
    same real features (the same sha256) and hold the column's per-real flags
    (:data:`PAIRED_COLUMNS`): McNemar's test in its normal form, ``z = (n10 - n01) / sqrt(n10 +
    n01)`` over the samples one run counts and the other does not (the standard error of the
    difference under the null, ``sqrt(n10 + n01) / N``); else from the ``--splits`` standard errors where
    both runs have them; else two-sample from the conditional standard errors (``<column>_se``),
    ``sqrt(se_a^2 + se_b^2)``."""
    a, b = _number(lookup(run["metrics"], column)), _number(lookup(base["metrics"], column))
    if a is None or b is None:
        return None
    same_real = (lookup(run, "inputs.real.sha256") is not None and
                 lookup(run, "inputs.real.sha256") == lookup(base, "inputs.real.sha256"))
    if same_real and column in PAIRED_COLUMNS:
        fa, fb = (unpack_flags(_entry(r, "real_flags", column)) for r in (run, base))
        if fa is not None and fb is not None and fa.size == fb.size > 1:
            discordant = int((fa != fb).sum())  # samples that one run counts and the other does not
            return Difference(column, a - b, math.sqrt(discordant) / fa.size, "paired")
    split_a, split_b = (_number(lookup(_entry(r, "splits", "metrics", column) or {}, "se")) for r in (run, base))
    if split_a is not None and split_b is not None:
        return Difference(column, a - b, math.hypot(split_a, split_b), "splits")
    se_a, se_b = _number(lookup(run["metrics"], f"{column}_se")), _number(lookup(base["metrics"], f"{column}_se"))
    if se_a is None or se_b is None:
        return None
    return Difference(column, a - b, math.hypot(se_a, se_b), "two-sample")


def baseline_index(runs: list[tuple[str, dict]], baseline: str | None) -> int:
    """The row of ``--baseline``: a run label as the ``run`` column shows it, else the generated
    set's file name where one run alone has it; the first run by default."""
    if baseline is None:
        return 0
    labels = [label for label, _ in runs]
    if baseline in labels:
        return labels.index(baseline)
    named = [i for i, (_, record) in enumerate(runs) if _name(lookup(record, "inputs.fake.path")) == baseline]
    if len(named) == 1:
        return named[0]
    why = f"{len(named)} runs have the generated set {baseline!r}" if named else "no run is labelled so"
    shown = ", ".join(labels[:8]) + (", ..." if len(labels) > 8 else "")
    raise InputError(f"{why} (runs: {shown}; or the generated set's file name)", option="--baseline", value=baseline)


def significance(runs: list[tuple[str, dict]], columns: list, base: int) -> tuple[list[str], list[list[Difference]]]:
    """(the :data:`SIGNIFICANCE_COLUMN` cell of each run, each run's differences from the baseline):
    ``baseline`` for the baseline, the columns whose difference is beyond two standard errors with
    their z (``pr.recall z=-3.1; dc.coverage z=-2.4``), ``none``, or ``-`` where no column could be tested."""
    cells, found = [], []
    for i, (_, record) in enumerate(runs):
        diffs = [] if i == base else [d for d in (difference(record, runs[base][1], c) for c in columns) if d]
        found.append(diffs)
        beyond = [f"{d.column} z={d.z:+.1f}" for d in diffs if d.beyond]
        cells.append("baseline" if i == base else "; ".join(beyond) if beyond else "none" if diffs else "-")
    return cells, found


def difference_lines(runs: list[tuple[str, dict]], found: list[list[Difference]], base: int) -> list[str]:
    """One line per tested difference: ``run 2 - run 1: pr.recall -0.0412 (se 0.0061, paired, z -6.8) *``,
    ``*`` where beyond two standard errors."""
    lines = []
    for (label, _), diffs in zip(runs, found):
        for d in diffs:
            lines.append(f"run {label} - run {runs[base][0]}: {d.column} {d.diff:+.4f} (se {d.se:.4f}, {d.test}, "
                         f"z {d.z:+.1f})" + (" *" if d.beyond else ""))
    return lines
