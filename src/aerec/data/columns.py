"""Which column of a table holds the users, the items, the ratings and the timestamps.

Files (:mod:`aerec.data.readers`) and data frames (:meth:`Interactions.from_pandas
<aerec.data.interactions.Interactions.from_pandas>`) share one rule: a column named explicitly
is used as it is named; every other role is filled by the one column whose name is a common name
for it (:data:`COLUMN_ALIASES`, compared case-insensitively). Two candidates for one role are an
error that names both, because picking one would be a guess.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from aerec.errors import DataError

__all__ = ["COLUMN_ALIASES", "Columns", "detect_columns"]

#: The column names recognised for each role (matching ignores case).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id", "userId", "uid"),
    "item": ("item", "item_id", "itemId", "movieId", "iid"),
    "rating": ("rating", "score"),
    "timestamp": ("timestamp", "ts"),
}
_LOWER = {role: {a.lower() for a in names} for role, names in COLUMN_ALIASES.items()}


@dataclass(frozen=True)
class Columns:
    """The column that holds each field; ``None`` where the source has no such field."""

    user: Hashable
    item: Hashable
    rating: Hashable | None = None
    timestamp: Hashable | None = None

    def used(self) -> dict[str, Hashable]:
        """Field name -> column name, for the fields the source has."""
        pairs = {"user": self.user, "item": self.item,
                 "rating": self.rating, "timestamp": self.timestamp}
        return {field: column for field, column in pairs.items() if column is not None}


def detect_columns(
    columns: Sequence[Hashable],
    *,
    user: Hashable | None = None,
    item: Hashable | None = None,
    rating: Hashable | None = None,
    timestamp: Hashable | None = None,
    source: str | None = None,
) -> Columns:
    """Assign a column to each role: the one named, else the one with a common name.

    Parameters
    ----------
    columns : sequence
        The table's column names, in order.
    user, item, rating, timestamp : optional
        Columns named by the caller; they must exist (exact, case-sensitive match).
    source : str, optional
        The file the columns come from, for the error messages.

    Returns
    -------
    Columns
        ``rating`` and ``timestamp`` are None when neither named nor found.

    Raises
    ------
    DataError
        If a named column is missing, two columns could serve one role, two roles would share
        a column, or no user or item column is found. The message lists the table's columns.
    """
    columns = list(columns)
    listed = ", ".join(repr(c) for c in columns)
    repeated = sorted({str(c) for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataError(f"column name(s) {', '.join(map(repr, repeated))} occur more than once; "
                        f"the columns are: {listed}", path=source)
    named = {"user": user, "item": item, "rating": rating, "timestamp": timestamp}
    chosen: dict[str, Hashable | None] = {}
    for role, column in named.items():
        if column is not None and column not in columns:
            raise DataError(f"no column {column!r} (wanted for the {role}); the columns are: "
                            f"{listed}", path=source, field=str(column))
        chosen[role] = column
    taken = {c for c in chosen.values() if c is not None}
    for role, column in named.items():
        if column is None:
            chosen[role] = _find(role, [c for c in columns if c not in taken], listed, source)
    for role in ("user", "item"):
        if chosen[role] is None:
            raise DataError(
                f"no {role} column: name one ({_option(role, source)}) or call it one of "
                f"{', '.join(COLUMN_ALIASES[role])}; the columns are: {listed}", path=source)
    _check_distinct(chosen, source)
    return Columns(chosen["user"], chosen["item"], chosen["rating"], chosen["timestamp"])


def _find(role: str, columns: list[Hashable], listed: str, source: str | None) -> Hashable | None:
    """The one column whose name is an alias of ``role``; None if there is none."""
    candidates = [c for c in columns
                  if isinstance(c, str) and c.strip().lower() in _LOWER[role]]
    if len(candidates) > 1:
        raise DataError(
            f"columns {' and '.join(map(repr, candidates))} could both be the {role}; name one "
            f"({_option(role, source)})", path=source)
    return candidates[0] if candidates else None


def _option(role: str, source: str | None) -> str:
    """How a caller names the column of ``role``: a file's reader and CLI, or from_pandas."""
    return f"{role}_col= or --{role}-col" if source else f"{role}="


def _check_distinct(chosen: dict[str, Hashable | None], source: str | None) -> None:
    seen: dict[Hashable, str] = {}
    for role, column in chosen.items():
        if column is None:
            continue
        if column in seen:
            raise DataError(f"column {column!r} is named for both the {seen[column]} and the "
                            f"{role}", path=source, field=str(column))
        seen[column] = role
