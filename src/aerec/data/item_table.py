"""An items table of one's own: the id and name of each item (``items.csv``: ``product_id,name``).

A shop's interactions name products by id; its catalogue names them in words. Given with
``aerec train --item-table FILE`` or ``Interactions.from_pandas(..., items=frame)``, the names
become the data's ``item_titles``, which travel with the split and the model, so that
``aerec recommend``, the service's answers and its demo page show them.

The id column is found as the interactions' item column is (``item_id``, ``product_id``,
``sku``, ...), the name column by :data:`NAME_COLUMNS`; further columns (price, category, ...)
are allowed and not used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from aerec.data.columns import COLUMN_ALIASES
from aerec.errors import ConfigError, DataError, EmptyDataError

if TYPE_CHECKING:  # Interactions.from_pandas imports this module
    from aerec.data.interactions import Interactions

__all__ = ["NAME_COLUMNS", "item_names", "read_item_table", "with_item_names"]

#: Column names recognised for an item's name (matching ignores case).
NAME_COLUMNS = ("name", "title", "item_name", "product_name", "product_title", "label")
_FORMATS = {".csv": ",", ".tsv": "\t", ".parquet": None}


def read_item_table(path: str | Path) -> dict[str, str]:
    """Raw item id -> name, from a CSV, TSV or Parquet table with a header.

    Raises
    ------
    DataError
        If the file is missing, its id or name column cannot be found, an id is missing or
        repeated (the line named).
    ConfigError
        If the suffix is not ``.csv``, ``.tsv`` or ``.parquet``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ConfigError(f"{path}: an items table is a .csv, .tsv or .parquet file")
    if not path.is_file():
        raise DataError("file not found", path=path)
    if suffix == ".parquet":
        from aerec.extras import require

        frame = require("pyarrow.parquet", "parquet", f"reading {path}").read_table(path).to_pandas()
        first_line = 1  # rows, not lines
    else:
        try:
            frame = pd.read_csv(path, sep=_FORMATS[suffix], dtype=str, keep_default_na=False,
                                encoding="utf-8-sig")
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(f"not a readable table ({str(exc).splitlines()[0][:200]})",
                            path=path) from None
        frame.columns = [str(c).strip() for c in frame.columns]
        first_line = 2  # the header is line 1
    return item_names(frame, source=str(path), first_line=first_line)


def item_names(frame: Any, *, source: str | None = None, first_line: int = 1) -> dict[str, str]:
    """Raw item id -> name from a data frame of items (see the module docstring).

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per item (a polars DataFrame or pyarrow Table is converted).
    source : str, optional
        The file it was read from, for messages.
    first_line : int
        The line (or row) number of the first row, for messages.

    Raises
    ------
    DataError
        As :func:`read_item_table`.
    """
    from aerec.data.frames import as_pandas

    frame = as_pandas(frame)
    if len(frame) == 0:
        raise EmptyDataError("the items table has no rows", path=source)
    listed = ", ".join(repr(c) for c in frame.columns)
    id_col = _column(frame, COLUMN_ALIASES["item"], "id", listed, source)
    name_col = _column(frame, NAME_COLUMNS, "name", listed, source)
    ids = frame[id_col].to_numpy()
    names = frame[name_col].to_numpy()
    missing = pd.isna(ids) | (np.asarray([str(i).strip() for i in ids]) == "")
    if missing.any():
        raise DataError("missing item id", path=source, line=first_line + int(np.argmax(missing)),
                        field=str(id_col))
    keys = [str(_plain(i)).strip() for i in ids]
    seen: dict[str, int] = {}
    for k, key in enumerate(keys):
        if key in seen:
            raise DataError(f"item {key!r:.60} is listed twice (first on line "
                            f"{first_line + seen[key]})", path=source, line=first_line + k,
                            field=str(id_col))
        seen[key] = k
    return {key: "" if pd.isna(name) else str(name).strip() for key, name in zip(keys, names)}


def with_item_names(data: Interactions, names: dict[str, str]) -> Interactions:
    """``data`` with the names of its items from ``names`` (items it lacks are ignored; its own
    titles stay where ``names`` has none)."""
    titles = dict(data.item_titles)
    titles.update({i: names[i] for i in data.item_ids.tolist() if names.get(i)})
    return dataclasses.replace(data, item_titles=titles)


def _column(frame: pd.DataFrame, aliases: tuple[str, ...], role: str, listed: str,
            source: str | None) -> Hashable:
    lower = {a.lower() for a in aliases}
    found = [c for c in frame.columns if isinstance(c, str) and c.strip().lower() in lower]
    if len(found) > 1:
        raise DataError(f"columns {' and '.join(map(repr, found))} could both be the item "
                        f"{role}; keep one", path=source)
    if not found:
        raise DataError(f"no item {role} column: call it one of {', '.join(aliases)}; the "
                        f"columns are: {listed}", path=source)
    return found[0]


def _plain(value: Any) -> Any:
    # 12.0 from a numeric Parquet column is the item "12", as the interactions spell it
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    return value
