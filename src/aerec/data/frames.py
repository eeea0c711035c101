"""Columns of a data frame, checked and converted into the arrays that build an Interactions.

Shared by :meth:`Interactions.from_pandas <aerec.data.interactions.Interactions.from_pandas>`
and the Parquet reader, which reads its table into pandas first. A bad value is reported by its
1-based row and its column, on one line.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from aerec.data.columns import Columns
from aerec.errors import EmptyDataError, ParseError

__all__ = ["BadTimestamp", "as_pandas", "frame_arrays", "text_timestamps"]

_INT64_MAX = np.iinfo(np.int64).max
#: The largest rating: values are stored as float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Kinds of object columns (as pandas.api.types.infer_dtype names them) that hold no unhashable ids.
_PLAIN = {"string", "bytes", "integer", "floating", "mixed-integer-float", "boolean", "decimal"}


def as_pandas(table: Any) -> pd.DataFrame:
    """A pandas DataFrame, or a polars DataFrame / pyarrow Table converted by its ``to_pandas``.

    Raises
    ------
    TypeError
        For anything else.
    """
    if isinstance(table, pd.DataFrame):
        return table
    module = type(table).__module__.split(".")[0]
    if module in ("polars", "pyarrow") and hasattr(table, "to_pandas"):
        return table.to_pandas()
    raise TypeError(
        f"expected a pandas DataFrame (or a polars DataFrame / pyarrow Table), "
        f"got {type(table).__name__}"
    )


def frame_arrays(frame: pd.DataFrame, columns: Columns, *, source: str | None = None
                 ) -> dict[str, np.ndarray]:
    """Field name -> checked values, for the fields ``columns`` names.

    Ids come back as they are (any hashable values), ratings and quantities as float64 and
    timestamps as int64 seconds (datetime columns and ISO 8601 text are converted, see
    :func:`text_timestamps`).

    Raises
    ------
    EmptyDataError
        If the frame has no rows.
    ParseError
        On a missing value, an id that is not hashable, a rating that is not a finite number, a
        quantity that is negative, or a timestamp that is neither an integer within int64 nor
        an ISO 8601 date-time (row and column named).
    """
    if len(frame) == 0:
        raise EmptyDataError("no interactions (the table has no rows)", path=source)
    return {field: _column(frame[name], field, source) for field, name in columns.used().items()}


def _column(column: pd.Series, field: str, source: str | None) -> np.ndarray:
    missing = column.isna().to_numpy()
    if missing.any():
        _fail(column, f"missing {field} in row {_row(missing)}", source)
    if field in ("user", "item"):
        return _ids(column, field, source)
    if field == "timestamp" and pd.api.types.is_datetime64_any_dtype(column):
        if column.dt.tz is not None:
            column = column.dt.tz_convert(None)
        return column.to_numpy().astype("datetime64[s]").astype(np.int64)
    values = column.to_numpy()
    if field == "timestamp" and (pd.api.types.is_string_dtype(column) or values.dtype == object):
        if pd.api.types.infer_dtype(values, skipna=False) == "string":
            try:
                return text_timestamps(values)
            except BadTimestamp as exc:
                _fail(column, str(exc), source)
        values = _object_integers(column, values, source)
    elif not pd.api.types.is_numeric_dtype(column):
        _fail(column, f"{field} must be numeric, the column is {column.dtype}", source)
    if field in ("rating", "quantity"):
        values = values.astype(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            _fail(column, f"{field} {values[bad][0]} in row {_row(bad)} is not finite", source)
        bad = np.abs(values) > FLOAT32_MAX  # stored as float32, where it would be infinite
        if bad.any():
            _fail(column, f"{field} {values[bad][0]} in row {_row(bad)} is too large ({field}s "
                          f"are float32: at most {FLOAT32_MAX:.3g})", source)
        if field == "quantity" and (values < 0).any():
            bad = values < 0
            _fail(column, f"quantity {values[bad][0]} in row {_row(bad)} is negative", source)
        return values
    return _timestamps(column, values, source)


def _ids(column: pd.Series, field: str, source: str | None) -> np.ndarray:
    values = column.to_numpy()
    # Any hashable value is an id (it becomes its str()); a list or a dict is a mistake. The
    # slow look at each value is for columns that pandas cannot tell to be all strings or numbers.
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) not in _PLAIN:
        for k, value in enumerate(values):
            try:
                hash(value)
            except TypeError:
                _fail(column, f"{field} id in row {k + 1} is a {type(value).__name__}, which "
                              f"cannot be an id (use str or int ids)", source)
    return values


def _timestamps(column: pd.Series, values: np.ndarray, source: str | None) -> np.ndarray:
    if values.dtype.kind == "u":
        too_big = values > _INT64_MAX
    elif values.dtype.kind == "f":
        fractional = np.mod(values, 1) != 0
        if fractional.any():
            _fail(column, f"timestamp {values[fractional][0]} in row {_row(fractional)} is not "
                          f"an integer", source)
        # 2**63 is the first float64 beyond int64 (int64's maximum rounds up to it).
        too_big = np.abs(values) >= 2.0**63
    else:
        too_big = np.zeros(len(values), bool)
    if too_big.any():
        _fail(column, f"timestamp {values[too_big][0]} in row {_row(too_big)} is beyond the "
                      f"range of a 64-bit integer", source)
    return values.astype(np.int64)


def _object_integers(column: pd.Series, values: np.ndarray, source: str | None) -> np.ndarray:
    """Python ints (which pandas keeps as objects when one is beyond int64) as int64."""
    for k, value in enumerate(values):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            _fail(column, f"timestamp {value!r} in row {k + 1} is not an integer", source)
        if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
            _fail(column, f"timestamp {value} in row {k + 1} is beyond the range of a "
                          f"64-bit integer", source)
    return values.astype(np.int64)


class BadTimestamp(ValueError):
    """A text timestamp that is neither an integer nor an ISO 8601 date-time.

    Attributes
    ----------
    row : int
        Its 1-based position among the values.
    """

    def __init__(self, message: str, row: int) -> None:
        super().__init__(message)
        self.row = row


# Like pandas' integer columns, integral decimals such as "4.0" count as integers.
_INTEGER_TEXT = r"\s*[+-]?\d+(?:\.0*)?\s*"


def text_timestamps(values: np.ndarray) -> np.ndarray:
    """Timestamps written as text, as int64 Unix seconds.

    Integers are seconds as they are. Anything else must be an ISO 8601 date or date-time
    (``2026-01-01``, ``2026-01-01 00:09:19``, ``2026-01-01T00:09:19Z``, ``...+02:00``): one with a
    zone is converted to UTC, one without is read as UTC, as a Parquet timestamp column is.
    Which of the two a column holds is decided by its first value; fractions of a second are
    dropped.

    Raises
    ------
    BadTimestamp
        For the first value that does not fit (its row and text in the message).
    """
    text = pd.Series(np.asarray(values, dtype=object)).astype(str)
    integer = text.str.fullmatch(_INTEGER_TEXT).to_numpy(bool)
    if len(text) and integer[0]:
        if not integer.all():
            raise _bad(text, ~integer, "is not an integer (the column's first timestamp is)")
        try:
            return text.str.replace(r"\.0*\s*$", "", regex=True).astype(np.int64).to_numpy()
        except (OverflowError, ValueError):
            big = np.array([not -2**63 <= int(t.strip().partition(".")[0]) < 2**63
                            for t in text.tolist()])
            raise _bad(text, big, "is beyond the range of a 64-bit integer") from None
    # Plain dates pass too; "now", "today" and the like are refused, not read as the clock.
    iso = text.str.fullmatch(r"\s*\d{4}-\d{2}-\d{2}([T ].*)?").to_numpy(bool)
    if not iso.all():
        raise _bad(text, ~iso, "is neither an integer nor an ISO 8601 date-time")
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        raise _bad(text, bad, "is not a valid ISO 8601 date-time")
    return parsed.dt.tz_convert(None).to_numpy().astype("datetime64[s]").astype(np.int64)


def _bad(text: pd.Series, mask: np.ndarray, problem: str) -> BadTimestamp:
    row = _row(mask)
    return BadTimestamp(f"timestamp {text.iloc[row - 1].strip()!r:.60} in row {row} {problem}",
                        row)


def _row(mask: np.ndarray) -> int:
    """The 1-based row of the first True in ``mask``."""
    return int(np.flatnonzero(mask)[0]) + 1


def _fail(column: pd.Series, message: str, source: str | None) -> None:
    raise ParseError(message, path=source, field=str(column.name))
