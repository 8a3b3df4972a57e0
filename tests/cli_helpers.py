"""Running the command-line scripts in tests: in process through ``main(argv)``, or as a process
where the process is what is tested (exit status on a signal, closed or broken stdout)."""
from __future__ import annotations

import contextlib
import io
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METRICS_SCRIPT = ROOT / "improved_precision_recall_hubness.py"
FEATURES_SCRIPT = ROOT / "getFeature.py"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def call(main, *args) -> Result:
    """``main([...args])`` with stdout and stderr captured; the exit status whether returned or raised
    (argparse exits), and the logging set-up of the run undone afterwards."""
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
    return Result(code, out.getvalue(), err.getvalue())


def spawn(script: Path, *args, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """The script as its own process (text output captured unless ``stdout`` is given)."""
    kwargs.setdefault("stderr", subprocess.PIPE)
    kwargs.setdefault("stdout", subprocess.PIPE)
    return subprocess.run([sys.executable, str(script), *map(str, args)], text=True, timeout=timeout, **kwargs)


def assert_one_line_error(result, *fragments, status=None) -> str:
    """A failed run that said why in exactly one line on stderr (no traceback) and printed nothing."""
    assert result.returncode != 0 if status is None else result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert result.stdout == ""
    return lines[0]
