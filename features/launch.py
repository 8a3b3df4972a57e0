"""What the two scripts run first, before any heavy import (torch, numba): standard library only.

- Ctrl-C at any moment, during the imports too, ends the run with one line on stderr and exit
  status 130, never a traceback;
- standard streams the caller closed (``>&-``) are reopened on /dev/null before any file is opened,
  so that no output file can take their descriptors; a closed stdout still counts as one that
  cannot be written (the scripts report it like ``>/dev/full``).
"""
from __future__ import annotations

import errno
import importlib
import io
import os
import signal
import sys

EXIT_INTERRUPTED = 130


def say(line: str) -> None:
    """One line on stderr; nothing if stderr itself is gone."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


class _ClosedStdout(io.TextIOBase):
    """Stands for a stdout closed before the start: writing to it fails as writing to fd 1 would."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))


def _reopen_closed_std_streams() -> None:
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        setattr(sys, name, _ClosedStdout() if fd == 1 else open(os.devnull, "r" if fd == 0 else "w"))


def _exit_at_shutdown(prog: str):
    def handler(signum, frame):
        say(f"{prog}: interrupted")
        os._exit(EXIT_INTERRUPTED)
    return handler


def _exit_now(status: int) -> None:
    """Leave at once: after a Ctrl-C the interpreter's own shutdown would join worker threads
    (compute kernels, the kernel loader), which may be waiting for a lock the interrupted thread
    held. Every output is already cleaned up (temp files removed where the exception passed)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(status)


def launch(module: str, prog: str) -> int:
    """Import ``module`` (a command: ``hubness.command``, ``hubness.extract_command``, ...) and run its
    ``main()``; returns the exit status
    (an interrupted run does not return: it exits with status 130 at once)."""
    try:
        _reopen_closed_std_streams()
        status = importlib.import_module(module).main(prog=prog)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the exit
        say(f"{prog}: interrupted")
        _exit_now(EXIT_INTERRUPTED)
    if status == EXIT_INTERRUPTED:  # main() caught the Ctrl-C and said so
        _exit_now(EXIT_INTERRUPTED)
    # from here on the interpreter shuts down (threads joined, buffers flushed): no traceback either
    signal.signal(signal.SIGINT, _exit_at_shutdown(prog))
    return status
