"""The one error type for bad input from a user.

A :class:`UserError` is a problem the user can fix (a missing file, a malformed spec, an option out
of range, a corpus made another way): the command line prints its message as one line and exits
with status 2. Every other exception is a bug and keeps its traceback. The domain errors
(``CorpusError``, ``SpecError``, ``ReferenceDataError``, ...) are user errors. It is a ``ValueError``,
so code that catches ``ValueError`` keeps working. Warnings reach a person at a terminal as one line
each (:func:`show_warning_line`), in every process of a command.
"""

from __future__ import annotations

import sys


class UserError(ValueError):
    """Bad input from the user; the message names the file, option or key and what to do."""


def show_warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings for a person at a terminal (``warnings.showwarning``): one line, no source location."""
    print(f"synthscope: warning: {message}", file=file or sys.stderr)
