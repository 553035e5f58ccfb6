"""Tables written for people to open: CSV cells that a spreadsheet would run as formulas, made inert."""

from __future__ import annotations

import pandas as pd

#: What makes a spreadsheet read a cell as a formula (OWASP, "CSV injection"): = + - @, and a tab or
#: carriage return, which some spreadsheets skip before looking for one of those.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells beginning with ``= + - @``, a tab or a carriage return
    start with a single quote instead (``=HYPERLINK(…)`` becomes ``'=HYPERLINK(…)``), as OWASP
    recommends against spreadsheet-formula ("CSV") injection.

    Only text (``str``) cells change: numbers stay numbers, so a negative score or ``-inf`` is still
    written as a number, and a column of numbers keeps its dtype. Use it on any table written as CSV
    whose cells can hold text from outside (file names, manifest values, prompts). A reader that
    needs the original text back removes the one leading quote from cells that then start with one
    of :data:`FORMULA_STARTS` (see :func:`undo_spreadsheet_safe`)."""
    safe = frame.copy()
    for column in safe.columns:
        values = safe[column]
        if values.dtype != object and not pd.api.types.is_string_dtype(values.dtype):
            continue  # numbers, booleans, dates: nothing a spreadsheet would run
        safe[column] = values.map(_safe_cell)
    return safe


def undo_spreadsheet_safe(frame: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """A copy of ``frame`` with :func:`spreadsheet_safe`'s quote removed again from text cells of
    ``columns`` (default: all). Ambiguous only for text that itself began with a quote followed by
    one of :data:`FORMULA_STARTS`."""
    restored = frame.copy()
    for column in columns if columns is not None else list(restored.columns):
        if column in restored.columns and restored[column].dtype == object:
            restored[column] = restored[column].map(_unsafe_cell)
    return restored


def _safe_cell(value: object) -> object:
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def _unsafe_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value
