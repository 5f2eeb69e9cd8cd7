"""The one exception type that the command line turns into a one-line message.

Raise :class:`InputError` for anything a user can fix (a missing file, a bad column, an existing
output folder); the CLI prints ``hetacumn: error: <file>: <problem>`` and exits with status 2.
"""

from __future__ import annotations

import os

__all__ = ["InputError", "first_line"]


class InputError(Exception):
    """A problem with user input, reported as ``<path>: <problem>`` without a traceback."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(problem if self.path is None else f"{self.path}: {problem}")


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name when the message is empty), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
