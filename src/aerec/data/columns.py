"""Which column of a table holds the users, the items, the ratings, the timestamps, the quantities.

Files (:mod:`aerec.data.readers`) and data frames (:meth:`Interactions.from_pandas
<aerec.data.interactions.Interactions.from_pandas>`) share one rule: a column named explicitly
is used as it is named; every other role is filled by the one column whose name is a common name
for it (:data:`COLUMN_ALIASES`, compared case-insensitively). Two candidates for one role are an
error that names both, because picking one would be a guess.

The names cover the MovieLens releases and the usual exports of a shop (``customer_id``,
``product_id``, ``sku``, ``purchased_at``, ``quantity``). A *quantity* is the value of an implicit
interaction (units bought; summed with ``duplicates="sum"``); it is looked for only when there is
no rating, since a rating already gives each interaction its value.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from aerec.errors import DataError

__all__ = ["COLUMN_ALIASES", "Columns", "detect_columns"]

#: The column names recognised for each role (matching ignores case).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id", "userId", "uid", "customer", "customer_id", "customerId",
             "client", "client_id", "clientId", "buyer_id", "member_id", "account_id",
             "visitor_id"),
    "item": ("item", "item_id", "itemId", "movieId", "iid", "product", "product_id", "productId",
             "sku", "article", "article_id", "articleId", "asin", "variant_id"),
    "rating": ("rating", "score"),
    "timestamp": ("timestamp", "ts", "time", "datetime", "date", "event_time", "purchased_at",
                  "purchase_date", "ordered_at", "order_date", "created_at", "t_dat"),
    "quantity": ("quantity", "qty", "units"),
}
_LOWER = {role: {a.lower() for a in names} for role, names in COLUMN_ALIASES.items()}


@dataclass(frozen=True)
class Columns:
    """The column that holds each field; ``None`` where the source has no such field."""

    user: Hashable
    item: Hashable
    rating: Hashable | None = None
    timestamp: Hashable | None = None
    quantity: Hashable | None = None

    def used(self) -> dict[str, Hashable]:
        """Field name -> column name, for the fields the source has."""
        pairs = {"user": self.user, "item": self.item, "rating": self.rating,
                 "timestamp": self.timestamp, "quantity": self.quantity}
        return {field: column for field, column in pairs.items() if column is not None}


def detect_columns(
    columns: Sequence[Hashable],
    *,
    user: Hashable | None = None,
    item: Hashable | None = None,
    rating: Hashable | None = None,
    timestamp: Hashable | None = None,
    quantity: Hashable | None = None,
    source: str | None = None,
) -> Columns:
    """Assign a column to each role: the one named, else the one with a common name.

    Parameters
    ----------
    columns : sequence
        The table's column names, in order.
    user, item, rating, timestamp, quantity : optional
        Columns named by the caller; they must exist (exact, case-sensitive match).
    source : str, optional
        The file the columns come from, for the error messages.

    Returns
    -------
    Columns
        ``rating``, ``timestamp`` and ``quantity`` are None when neither named nor found (a
        quantity is not looked for beside a rating).

    Raises
    ------
    DataError
        If a named column is missing, two columns could serve one role, two roles would share
        a column, a rating and a quantity are both named, or no user or item column is found.
        The message lists the table's columns.
    """
    columns = list(columns)
    listed = ", ".join(repr(c) for c in columns)
    repeated = sorted({str(c) for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataError(f"column name(s) {', '.join(map(repr, repeated))} occur more than once; "
                        f"the columns are: {listed}", path=source)
    named = {"user": user, "item": item, "rating": rating, "timestamp": timestamp,
             "quantity": quantity}
    chosen: dict[str, Hashable | None] = {}
    for role, column in named.items():
        if column is not None and column not in columns:
            raise DataError(f"no column {column!r} (wanted for the {role}); the columns are: "
                            f"{listed}", path=source, field=str(column))
        chosen[role] = column
    if rating is not None and quantity is not None:
        raise DataError(f"name a rating or a quantity, not both: each gives the interaction's "
                        f"value (the columns are: {listed})", path=source)
    taken = {c for c in chosen.values() if c is not None}
    for role, column in named.items():
        if column is None and not (role == "quantity" and chosen["rating"] is not None):
            chosen[role] = _find(role, [c for c in columns if c not in taken], listed, source)
    for role in ("user", "item"):
        if chosen[role] is None:
            raise DataError(
                f"no {role} column: name one ({_option(role, source)}) or call it one of "
                f"{', '.join(COLUMN_ALIASES[role])}; the columns are: {listed}", path=source)
    _check_distinct(chosen, source)
    return Columns(chosen["user"], chosen["item"], chosen["rating"], chosen["timestamp"],
                   chosen["quantity"])


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
    if not source:
        return f"{role}="
    # aerec train has no --quantity-col: a quantity column is found by its name
    return f"{role}_col=" if role == "quantity" else f"{role}_col= or --{role}-col"


def _check_distinct(chosen: dict[str, Hashable | None], source: str | None) -> None:
    seen: dict[Hashable, str] = {}
    for role, column in chosen.items():
        if column is None:
            continue
        if column in seen:
            raise DataError(f"column {column!r} is named for both the {seen[column]} and the "
                            f"{role}", path=source, field=str(column))
        seen[column] = role
