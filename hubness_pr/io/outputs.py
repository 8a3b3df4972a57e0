"""Writing output files safely: every layer (command line, feature store, checkpoints) writes through here.

An :class:`OutputFiles` holds the output files of one run. Each is checked when it is added,
before any work (folder exists and is writable, not a folder, not one of the run's inputs, not
another output of the run); its content is then written to a temporary file, and
:meth:`OutputFiles.commit` puts all of them in place together, or :meth:`OutputFiles.discard`
none (an error or Ctrl-C in any writer leaves no output of the run behind). A last step registered
with :meth:`OutputFiles.on_commit` (the run log's line) runs once they are in place; if it fails, the
files renamed into place are put back as they were. How a file is put in place depends on what the
path names:

- a regular file or a new name: the temporary file lies beside it and is renamed over it
  (``os.replace``), so a reader never sees half a file. A new file gets the mode the user's umask
  gives (0644 under umask 022); a replaced file keeps its mode (a read-only one is refused, as
  ``open()`` would refuse it);
- a symbolic link: written through, as ``open()`` would: the temporary file lies beside the link's
  target and replaces the target; the link stays;
- a special file (character device such as ``/dev/null``, FIFO) or a file descriptor alias
  (``/dev/stdout``, ``/dev/fd/N``, ``/proc/self/fd/N``): written directly, never replaced; the
  content waits in an anonymous temporary file until the commit.

:func:`atomic_write` is the same for a single file.

A temporary file's name tells who made it: ``.NAME.HOST-PID.RANDOM.tmp``. A run killed outright
(SIGKILL, the machine's OOM killer) cannot remove its own; the next write of the same NAME in that
folder does (:func:`sweep_stale`), where it was made on this host by a process that is gone and
has not changed for an hour. Any other (a live writer's, another host's, an older name form) is left.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import time
from pathlib import Path

from hubness_pr.errors import InputError

_FD_ALIAS = re.compile(r"^/(?:dev/fd|proc/self/fd|proc/(\d+)/fd)/(\d+)$")
_STD_ALIAS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
STALE_SECONDS = 3600  # a dead writer's temporary file is removed once it is this old (unchanged)


def _host() -> str:
    """This host's name as it goes into temporary file names (letters, digits, ``-`` and ``_``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:64] or "host"


def temp_prefix(name: str) -> str:
    """The start of a temporary file's name for the file ``name``: ``.NAME.HOST-PID.`` (then a random
    part and ``.tmp``)."""
    return f".{name}.{_host()}-{os.getpid()}."


def _gone(pid: int) -> bool:
    """True where no process ``pid`` runs (on this host, in this PID namespace)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: another user's process, alive
        return False
    return False


def sweep_stale(folder, name: str, dir_fd: int | None = None) -> list:
    """Remove, from ``folder`` (a path, or ``"."`` with ``dir_fd`` an open folder), the temporary files
    of ``name`` left by writers that are gone: made on this host (the name's HOST) by a process PID
    that no longer runs, and unchanged for :data:`STALE_SECONDS`. Returns the names removed; what
    cannot be read or removed is left as it is."""
    head, host, removed = f".{name}.", _host(), []
    try:
        entries = os.listdir(dir_fd if dir_fd is not None else folder)
    except OSError:
        return removed
    for entry in entries:
        if not (entry.startswith(head) and entry.endswith(".tmp")):
            continue
        tag = entry[len(head):-len(".tmp")].rpartition(".")[0]  # HOST-PID (the random part dropped)
        owner, _, pid = tag.rpartition("-")
        if owner != host or not pid.isdigit() or not _gone(int(pid)):
            continue
        where = entry if dir_fd is not None else os.path.join(folder, entry)
        with contextlib.suppress(OSError):
            st = os.stat(where, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and time.time() - st.st_mtime > STALE_SECONDS:
                os.unlink(where, dir_fd=dir_fd)
                removed.append(entry)
    return removed


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (``/proc/self/status``)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fd_alias(path: str) -> int | None:
    """The file descriptor that ``path`` names through /dev/stdout, /dev/fd/N or /proc/self/fd/N links."""
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit of links followed in one path
        if current in _STD_ALIAS:
            return _STD_ALIAS[current]
        match = _FD_ALIAS.match(current)
        if match and (match.group(1) is None or int(match.group(1)) == os.getpid()):
            return int(match.group(2))
        if not os.path.islink(current):
            return None
        current = os.path.normpath(os.path.join(os.path.dirname(current), os.readlink(current)))
    return None


def _identity(path) -> tuple | None:
    """(device, inode) of the file ``path`` leads to, or None where there is none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def folder_form(path: str) -> bool:
    """Whether ``path`` names a folder by its form alone: it ends with a separator, or in ``.`` or ``..``."""
    return path.endswith(tuple(filter(None, (os.sep, os.altsep)))) or os.path.basename(path) in (".", "..")


class Output:
    """One planned output file; ``path`` is where it will lie (a symbolic link's target)."""

    def __init__(self, requested, option: str):
        if requested is None or str(requested) == "":
            raise TypeError(f"{option}: expected a file path, got {requested!r}")
        self.requested, self.option = str(requested), option
        if folder_form(self.requested):  # never a file named after the folder ("newdir/" would write newdir)
            raise self._fail("is a folder path, expected a file path")
        self.fd = _fd_alias(self.requested)
        self.direct = self.fd is not None
        self.char_device = False
        self.path = Path(self.requested)
        self._staged = None  # temporary file path (replace) or open anonymous file (direct)
        self._placed = None  # after a rename into place, until the commit ends: (backup path or None, identity)
        self.written = False  # a direct output: written by the commit
        if self.fd is None:
            self._classify()

    def _fail(self, problem: str) -> InputError:
        return InputError(problem, option=self.option, file=self.requested)

    def _classify(self) -> None:
        try:
            st = os.stat(self.requested)
        except FileNotFoundError:
            st = None
        except OSError as exc:  # a symbolic link loop, a path through a file, ...
            raise self._fail(f"cannot be used as an output ({exc.strerror})") from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise self._fail("is a folder, expected a file path")
        if st is not None and not stat.S_ISREG(st.st_mode):
            if stat.S_ISSOCK(st.st_mode):
                raise self._fail("is a socket, not a file that can be written")
            if not os.access(self.requested, os.W_OK):
                raise self._fail("is not writable")
            self.direct, self.char_device = True, stat.S_ISCHR(st.st_mode)
            return
        self.path = Path(os.path.realpath(self.requested))  # a link is written through, at its target
        folder = self.path.parent
        where = "" if str(self.path) == os.path.abspath(self.requested) else f" (resolved to {self.path})"
        if not folder.is_dir():
            raise self._fail(f"folder {folder if where else os.path.dirname(self.requested) or '.'} does not exist{where}")
        if not os.access(folder, os.W_OK):
            raise self._fail(f"folder {folder} is not writable{where}")
        if st is not None and not os.access(self.path, os.W_OK):  # as open() would refuse it
            raise self._fail(f"is not writable{where}")

    def same_file(self, other) -> bool:
        """True if writing this output would change the file ``other`` (a path) names."""
        mine = _identity(self.requested)
        return (mine is not None and mine == _identity(other)) or (
            not self.direct and os.path.realpath(other) == str(self.path))

    @contextlib.contextmanager
    def open(self, mode: str = "wb", **open_kwargs):
        """A writable file object on this output's temporary file; the output itself changes at the commit.

        A write error (OSError, or a UnicodeError of a text file) becomes a ValueError naming the option and file.
        """
        self._drop()
        try:
            if self.direct:
                raw = tempfile.TemporaryFile()
                self._staged = raw
                handle = open(os.dup(raw.fileno()), mode, **open_kwargs)
            else:
                sweep_stale(self.path.parent, self.path.name)
                fd, tmp = tempfile.mkstemp(prefix=temp_prefix(self.path.name), suffix=".tmp", dir=self.path.parent)
                self._staged = tmp
                os.fchmod(fd, self._mode())
                handle = os.fdopen(fd, mode, **open_kwargs)
            with handle:
                yield handle
                handle.flush()
                if not self.direct:
                    os.fsync(handle.fileno())
        except (OSError, UnicodeError) as exc:
            self._drop()
            raise self._fail(f"cannot write ({getattr(exc, 'strerror', None) or exc})") from None
        except BaseException:
            self._drop()
            raise

    def _mode(self) -> int:
        try:  # a replaced file keeps its mode, a new one gets the umask's
            return stat.S_IMODE(os.stat(self.path).st_mode)
        except OSError:
            return 0o666 & ~current_umask()

    def _put_in_place(self) -> None:
        if self._staged is None:
            return
        if not self.direct:
            backup = self._keep_previous()
            try:
                os.replace(self._staged, self.path)
            except BaseException:
                if backup is not None and not os.path.lexists(self.path):  # put aside: put it back
                    os.replace(backup, self.path)
                elif backup is not None:
                    _remove(backup)
                raise
            self._placed, self._staged = (backup, _identity(self.path)), None
            return
        source, self._staged = self._staged, None
        try:
            source.seek(0)
            if self.fd is not None:
                if self.fd in (1, 2):  # keep the order of what Python already printed there
                    for stream in (sys.stdout, sys.stderr):
                        with contextlib.suppress(Exception):
                            stream.flush()
                target = open(os.dup(self.fd), "wb")
            else:  # no O_CREAT: a special file that vanished is an error, never a new regular file
                target = open(os.open(self.requested, os.O_WRONLY), "wb")
            with target:
                self.written = True  # from the first byte on, it cannot be taken back
                shutil.copyfileobj(source, target)
        except OSError as exc:
            raise self._fail(f"cannot write ({exc.strerror or exc})") from None
        finally:
            source.close()

    def _keep_previous(self) -> str | None:
        """The file this output replaces, kept under a hidden name beside it until the commit ends
        (:meth:`OutputFiles.commit` may put it back): a hard link, so the path never lacks a file;
        where links are refused (a file system without them, another owner's file under
        ``protected_hardlinks``) the file is renamed aside. None where the output is a new file."""
        if not os.path.isfile(self.path):
            return None
        for _ in range(100):
            backup = str(self.path.parent / f".{self.path.name}.{os.urandom(4).hex()}.old")
            try:
                os.link(self.path, backup)
                return backup
            except FileExistsError:
                continue
            except OSError:
                if os.path.lexists(backup):
                    continue
                os.rename(self.path, backup)  # (rename does not replace a file only where link failed)
                return backup
        raise FileExistsError(f"{self.path}: no free name for a backup beside it")

    def _restore(self) -> str | None:
        """Undo the rename into place: the replaced file back, or the new file removed (only where the
        file at the path is still the one this output put there). Returns a problem, or None."""
        placed, self._placed = self._placed, None
        if placed is None:
            return None
        backup, identity = placed
        try:
            if backup is not None:
                os.replace(backup, self.path)
            elif identity is not None and _identity(self.path) == identity:
                os.unlink(self.path)
        except OSError as exc:
            return f"{self.requested} ({exc.strerror or exc})"
        return None

    def _release(self) -> None:
        """The commit is over: the replaced file's backup goes."""
        placed, self._placed = self._placed, None
        if placed is not None and placed[0] is not None:
            _remove(placed[0])

    def _drop(self) -> None:
        staged, self._staged = self._staged, None
        if isinstance(staged, str):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged)
        elif staged is not None:
            staged.close()


class OutputFiles:
    """The output files of one run: checked up front, written to temporary files, committed together.

    ``inputs`` maps a name for messages (``"REAL"``, ``"--weights"``) to a path the run reads; an
    output that is one of them, or is another output of the run, is refused when added. Used as a
    context manager, it commits on success and discards on any exception.
    """

    def __init__(self, inputs: dict | None = None):
        self.inputs = {name: str(path) for name, path in (inputs or {}).items() if path is not None}
        self.outputs: list[Output] = []
        self.last_step = None

    def add(self, path, option: str = "output") -> Output:
        output = Output(path, option)
        for name, source in self.inputs.items():
            if output.same_file(source):
                raise output._fail(f"is the input {name} ({source}); refusing to overwrite an input")
        for other in self.outputs:
            if not (output.char_device and other.char_device) and output.same_file(other.requested):
                raise output._fail(f"is also the output of {other.option}; give each output its own file")
        self.outputs.append(output)
        return output

    def on_commit(self, action) -> None:
        """Run ``action()`` as the commit's last step, once every output is in place (the run log's
        line: :func:`hubness_pr.reports.runlog.append_line`). If it fails or is interrupted, the renamed outputs are
        put back as they were (see :meth:`commit`)."""
        self.last_step = action

    def commit(self) -> None:
        """Put every written output in place: special files first (they are the ones that can fail
        half-way), then the renames, then the :meth:`on_commit` step. Each replaced file is kept
        (hard link) until the commit ends: where a rename or the last step fails, or Ctrl-C or
        SIGTERM comes, every output renamed into place is put back as it was (a new file removed),
        so a regular file is changed by the whole run or not at all. An output written directly
        (device, FIFO, stdout) cannot be taken back: the error says which were. On an error the
        outputs not yet in place are discarded."""
        ordered = sorted(self.outputs, key=lambda o: not o.direct)
        try:
            for output in ordered:
                output._put_in_place()
            if self.last_step is not None:
                self.last_step()
        except BaseException as exc:
            placed = [output.requested for output in ordered if output._placed is not None]
            problems = [problem for output in reversed(ordered) if (problem := output._restore()) is not None]
            written = [output.requested for output in ordered if output.written]
            if isinstance(exc, (InputError, OSError)) and (placed or written):
                what = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                said = (f"could not put back {', '.join(problems)}" if problems else
                        f"{', '.join(placed)} put back as they were" if placed else "")
                if written:
                    said += f"{'; ' if said else ''}written directly before the failure: {', '.join(written)}"
                if isinstance(exc, InputError):  # the same fault, with what became of the outputs
                    raise InputError(f"{exc.message}; {said}", file=exc.file, option=exc.option, role=exc.role,
                                     value=exc.value) from None
                raise InputError(f"{what}; {said}") from None
            raise
        else:
            for output in ordered:
                output._release()
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove every temporary file; no output changes."""
        for output in self.outputs:
            output._drop()

    def __enter__(self) -> OutputFiles:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", *, what: str = "output", **open_kwargs):
    """Write one file safely (see the module docstring): yields a file object; on success the file
    is put in place, on any exception (KeyboardInterrupt included) ``path`` is left as it was."""
    with OutputFiles() as outputs:
        with outputs.add(path, what).open(mode, **open_kwargs) as handle:
            yield handle


def check_output_path(path, what: str = "output") -> Path:
    """Fail early (ValueError naming ``what``) if ``path`` cannot be written; returns where it will lie."""
    return Output(path, what).path


def write_json(handle, payload: dict) -> None:
    """Strict JSON (no NaN/Infinity: callers pass values through ``hubness_pr.json_safe``), indented, to a
    text file object (an output of :class:`OutputFiles` opened in text mode)."""
    handle.write(json.dumps(payload, indent=2, allow_nan=False) + "\n")
