"""Raw ids to row and column indices, and repeated (user, item) pairs to one entry.

The two steps every constructor of :class:`~aerec.data.interactions.Interactions` takes, whatever
the source (arrays, a data frame, a file).
"""

from __future__ import annotations

import numpy as np

from aerec.errors import ConfigError, DataError

__all__ = ["DUPLICATE_POLICIES", "canonical_id", "combine_duplicates", "encode_ids", "id_strings",
           "integral_as_int", "latest_of_repeats", "repeated_keys"]


def integral_as_int(ids: np.ndarray) -> np.ndarray:
    """Integer ids stored as floats (as pandas reads an int column with gaps) as int64, so that
    they print without ".0"; other arrays as they are."""
    if ids.dtype.kind == "f" and np.all(np.mod(ids, 1) == 0) and np.all(np.abs(ids) < 2.0**63):
        return ids.astype(np.int64)
    return ids


def canonical_id(value: object) -> str:
    """The string an id value becomes, whatever the other ids are: an integral float is its
    integer (``5.0`` -> ``"5"``, as ``5``), any other value its ``str`` (text, ``6.5``, a tuple).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def id_strings(ids: np.ndarray) -> np.ndarray:
    """Each id as :func:`canonical_id` writes it, as an array of str."""
    ids = np.asarray(ids)
    if ids.dtype.kind in "iuUS":
        return ids.astype(str)
    if ids.dtype.kind == "f":
        integral = np.isfinite(ids) & (np.mod(ids, 1) == 0) & (np.abs(ids) < 2.0**63)
        if integral.all():
            return ids.astype(np.int64).astype(str)
        return np.array([canonical_id(v) for v in ids.tolist()], dtype=str)
    import pandas as pd

    codes, uniques = pd.factorize(ids, use_na_sentinel=False)
    return np.array([canonical_id(v) for v in uniques], dtype=str)[codes]


def encode_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, vocabulary)`` of raw ids: the vocabulary as strings, sorted numerically when
    every id is an integer and as text otherwise, and ``vocabulary[codes] == str(ids)``.

    Raises
    ------
    DataError
        If an id is missing (NaN or None).
    """
    # Imported here: pandas costs a quarter of a second, and ids are often integers.
    import pandas as pd

    ids = integral_as_int(np.asarray(ids))
    if ids.dtype.kind in "iu":
        return _encode_integers(ids)
    codes, uniques = pd.factorize(ids)
    if (codes < 0).any():
        raise DataError("missing ids (NaN or None)")
    # Each value its own string (5.0 is "5" beside "6.5" as beside "6"; a tuple its repr).
    uniques = id_strings(np.asarray(uniques, dtype=object))
    # Values that differ but print alike (1 and "1") are one id: merge them, on the uniques only.
    merged, uniques = pd.factorize(uniques)
    codes = merged[codes]
    uniques = np.asarray(uniques, dtype=str)
    order = _vocabulary_order(uniques)
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return rank[codes], uniques[order]


# Integer ids below this are encoded through a lookup table of this many entries at most (144 MB).
_DENSE_ID_LIMIT = 2**24


def _encode_integers(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    if len(ids) and ids.min() >= 0 and ids.max() < _DENSE_ID_LIMIT:
        # Small non-negative ids (all MovieLens releases): a lookup table, no hashing or sorting.
        present = np.zeros(int(ids.max()) + 1, bool)
        present[ids] = True
        code_of = np.cumsum(present, dtype=np.int64) - 1
        return code_of[ids], np.flatnonzero(present).astype(str)
    codes, uniques = pd.factorize(ids, sort=True)
    return codes.astype(np.int64), uniques.astype(str)


def _vocabulary_order(ids: np.ndarray) -> np.ndarray:
    """Positions that sort string ids: as integers when all are integers, else as text."""
    try:
        return np.argsort(ids.astype(np.int64), kind="stable")
    except (ValueError, OverflowError):
        return np.argsort(ids, kind="stable")


DUPLICATE_POLICIES = ("last", "sum", "max", "error")


def combine_duplicates(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    timestamps: np.ndarray | None,
    policy: str,
    *,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Make every (row, col) pair occur once, by ``policy`` (see ``Interactions.from_arrays``).

    Returns ``(rows, cols, values, timestamps)`` ordered by (row, col), which makes the sort in
    ``Interactions.from_indices`` cheap.
    """
    if policy not in DUPLICATE_POLICIES:
        raise ConfigError(f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, "
                          f"got {policy!r}")
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    key = rows * max(len(item_ids), 1) + cols
    order, repeated = repeated_keys(key)
    values = np.asarray(values)
    if not repeated.any():
        return rows[order], cols[order], values[order], _take(timestamps, order)
    where = np.flatnonzero(repeated)
    group_order, starts, last = latest_of_repeats(key, where, timestamps)
    if policy == "error":
        pair = (str(user_ids[rows[last[0]]]), str(item_ids[cols[last[0]]]))
        raise DataError(f"the (user, item) pair {pair} occurs more than once "
                        f"({len(where) - len(starts)} repeats in all); choose what repeats become "
                        f"with duplicates='last', 'sum' or 'max'")
    if policy == "sum":
        values = values.astype(np.float64)
        values[last] = np.add.reduceat(values[group_order], starts)
    elif policy == "max":
        values = values.copy()
        values[last] = np.maximum.reduceat(values[group_order], starts)
    kept = ~repeated
    kept[last] = True
    keep = order[kept[order]]  # the survivors, in key order
    return rows[keep], cols[keep], values[keep], _take(timestamps, keep)


def repeated_keys(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, repeated)``: a stable sort of ``key`` and the mask of the entries whose key occurs
    more than once."""
    # A stable sort is several times faster than hashing here: rating files come grouped by
    # user, and numpy's stable sort (timsort) profits from the runs.
    order = np.argsort(key, kind="stable")
    equal_next = key[order[1:]] == key[order[:-1]]
    repeated = np.zeros(len(key), bool)
    repeated[order[1:][equal_next]] = True
    repeated[order[:-1][equal_next]] = True
    return order, repeated


def latest_of_repeats(
    key: np.ndarray, where: np.ndarray, timestamps: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The repeated entries at the ascending positions ``where``, grouped by key.

    Returns ``(group_order, starts, last)``: ``where`` sorted by key then time, the start of each
    key's group in it, and the position of each group's latest entry (on equal or no timestamps,
    the last one: a later line of a file is taken to correct an earlier one).
    """
    # Only the repeats are sorted by time, which costs little as they are few (a full sort by
    # key and time takes 20x longer on 5M interactions). lexsort is stable, so equal times keep
    # the order of their positions.
    when = np.zeros(len(where), np.int64) if timestamps is None else np.asarray(timestamps)[where]
    group_order = where[np.lexsort((when, key[where]))]
    sorted_key = key[group_order]
    starts = np.flatnonzero(np.append(True, sorted_key[1:] != sorted_key[:-1]))
    last = group_order[np.append(starts[1:], len(group_order)) - 1]
    return group_order, starts, last


def _take(array: np.ndarray | None, positions: np.ndarray) -> np.ndarray | None:
    return None if array is None else np.asarray(array)[positions]
