"""What both command-line scripts share: one-line errors, exit codes, logging, JSON output."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from features.store import atomic_write

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line on stderr and exits with status 2.

    Abbreviated option names are refused (an unknown option is an error, never a guess).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def setup_logging(verbosity: int) -> None:
    """Logs go to stderr: warnings with -q, info by default, debug with -v."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(message)s", force=True)
    for noisy in ("matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_main(prog: str, body) -> int:
    """Call ``body()``; turn input errors into one line on stderr and a non-zero exit status.

    ValueError and OSError are the toolkit's "bad input" errors (their messages name the file or
    parameter); anything else is a bug and keeps its traceback.
    """
    try:
        body()
    except (ValueError, OSError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; no output file was written or changed", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def write_json(path, payload: dict) -> None:
    """Strict JSON (no NaN/Infinity: callers pass values through ``hubness.json_safe``), atomically."""
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(text)
