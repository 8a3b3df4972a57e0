"""Bad input, as a type: raised where the input is found wanting, turned into one line by the commands.

:class:`InputError` says what the user gave that cannot be used: a file (``file``), an option
(``option``, e.g. ``"--k"``, with its ``value`` where that is not a file) or an argument of a
library function, and which input it was (``role``: "real", "fake", "images", "checkpoint", ...).
``str()`` is the one line the user sees: ``[option] [file or value] [(role)]: message``, each part
only where it is given (``--fname_precalc out.txt: the output must end in .npz or .npy``,
``fake.npz (fake): row 4 contains NaN or Inf values``, ``--device cuda:3: ...``); the role is not
shown where the message already starts from it (``show_role=False``: ``fake.npz: fake has 3
samples; ...``).

The commands (:func:`hubness_pr.commands.cli.run_main`) map it, and only it, to one line on stderr
and exit status 1. The system's refusal to read or write a file the user named (missing, permission
denied, a folder, cut short, a disk full, a stdout closed) is bad input too: the OSError is wrapped
into an ``InputError(file=...)`` where the file is opened, read or written (``raise InputError(...)
from exc``). Any other exception, an OSError nobody wrapped included, is a fault of the toolkit:
the commands print ``PROG: internal error (a bug in the toolkit, please report it):`` and its
traceback, status 1. It is a ``ValueError``, so library
callers that catch ``ValueError`` for bad arguments keep working. Code that needs to know which
input was at fault reads the fields, never the message. Standard library only.
"""
from __future__ import annotations


class InputError(ValueError):
    """Input that cannot be used. ``str()`` is the line the user sees."""

    def __init__(self, message: str, *, file=None, option: str | None = None, role: str | None = None,
                 value=None, show_role: bool = True):
        super().__init__(message)
        self.show_role = show_role
        self.message = message
        self.file = None if file is None else str(file)
        self.option = option
        self.role = role
        self.value = None if value is None else str(value)

    def __str__(self) -> str:
        head = " ".join(part for part in (self.option, self.file if self.file is not None else self.value)
                        if part)
        if self.role and self.show_role and self.file is not None:
            head += f" ({self.role})"
        return f"{head}: {self.message}" if head else self.message

    def __reduce__(self):  # picklable with its fields (torchrun's gathered errors, multiprocessing workers)
        return (_rebuild, (type(self), self.message, self.file, self.option, self.role, self.value, self.show_role))

    def located(self, *, file=None, option: str | None = None, role: str | None = None,
                show_role: bool | None = None) -> InputError:
        """The same error with the fields it lacks filled in (the command knows which file a role is)."""
        return type(self)(self.message, file=self.file if self.file is not None else file,
                          option=self.option or option, role=self.role or role, value=self.value,
                          show_role=self.show_role if show_role is None else show_role)


class InputTypeError(InputError, TypeError):
    """Input of the wrong kind altogether (``None`` where an array is expected, a tensor of a dtype
    numpy lacks): an :class:`InputError` for the commands, and still a ``TypeError`` for library
    callers that catch it as one."""


def one_line(exc: BaseException) -> str:
    """The first line of an error's text (its type's name where it has none): what the user reads."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _rebuild(cls, message, file, option, role, value, show_role=True):
    return cls(message, file=file, option=option, role=role, value=value, show_role=show_role)


class CacheMiss(Exception):
    """No stored summary for this key (not an error: the run computes it). ``str()``: the line for
    the log (``no cached k-NN summary in FOLDER``)."""
