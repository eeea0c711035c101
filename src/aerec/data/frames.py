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

__all__ = ["as_pandas", "frame_arrays"]

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

    Ids come back as they are (any hashable values), ratings as float64 and timestamps as int64
    seconds (datetime columns are converted).

    Raises
    ------
    EmptyDataError
        If the frame has no rows.
    ParseError
        On a missing value, an id that is not hashable, a rating that is not a finite number or
        a timestamp that is not an integer within int64 (row and column named).
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
    if field == "timestamp" and values.dtype == object:
        values = _object_integers(column, values, source)
    elif not pd.api.types.is_numeric_dtype(column):
        _fail(column, f"{field} must be numeric, the column is {column.dtype}", source)
    if field == "rating":
        values = values.astype(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            _fail(column, f"rating {values[bad][0]} in row {_row(bad)} is not finite", source)
        bad = np.abs(values) > FLOAT32_MAX  # stored as float32, where it would be infinite
        if bad.any():
            _fail(column, f"rating {values[bad][0]} in row {_row(bad)} is too large (ratings "
                          f"are float32: at most {FLOAT32_MAX:.3g})", source)
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


def _row(mask: np.ndarray) -> int:
    """The 1-based row of the first True in ``mask``."""
    return int(np.flatnonzero(mask)[0]) + 1


def _fail(column: pd.Series, message: str, source: str | None) -> None:
    raise ParseError(message, path=source, field=str(column.name))
