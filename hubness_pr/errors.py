"""Bad input, as a type: raised where the input is found wanting, turned into one line by the commands.

:class:`InputError` says what the user gave that cannot be used: a file (``file``), an option
(``option``) or an argument of a library function, and which input it was (``role``: "real",
"fake", "images", "checkpoint", ...). The commands map it, and only it, to one line on stderr and
exit status 1; any other exception is a fault of the toolkit and keeps its traceback. It is a
``ValueError``, so library callers that catch ``ValueError`` for bad arguments keep working.
Standard library only.
"""
from __future__ import annotations


class InputError(ValueError):
    """Input that cannot be used. ``str()`` is the line the user sees."""

    def __init__(self, message: str, *, file=None, option: str | None = None, role: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = None if file is None else str(file)
        self.option = option
        self.role = role

    def __str__(self) -> str:
        return self.message


class CacheMiss(Exception):
    """No stored summary for this key (not an error: the run computes it)."""
