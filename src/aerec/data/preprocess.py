"""Preprocessing of interactions: duplicates, binarisation and minimum-count filtering.

The binarisation and the filter follow the reference preprocessing of Liang et al.,
"Variational Autoencoders for Collaborative Filtering" (WWW 2018): ratings above 3.5 count as
positive, then items and users with too few interactions are removed in one pass (items first).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from aerec.data.encoding import latest_of_repeats, repeated_keys
from aerec.data.options import Preprocessing
from aerec.data.interactions import Interactions
from aerec.errors import ConfigError, DataError, EmptyDataError


class DuplicateInteractionsWarning(UserWarning):
    """The same (user, item) pair occurred more than once; only one of them was kept."""


def drop_duplicates(
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray | None = None,
    *,
    source: str | None = None,
) -> np.ndarray:
    """Indices of the interactions to keep so that every (user, item) pair occurs once.

    Of each repeated pair the interaction with the latest timestamp is kept; on equal timestamps,
    and always when there are no timestamps, the one that comes last wins (a later line of a file
    is taken to correct an earlier one). Emits a :class:`DuplicateInteractionsWarning` saying how
    many interactions were dropped when there were any.

    Parameters
    ----------
    users, items : numpy.ndarray
        Parallel arrays, one entry per interaction: raw ids or integer indices.
    timestamps : numpy.ndarray, optional
        One timestamp per interaction.
    source : str, optional
        Where the interactions come from (a file name), for the warning.

    Returns
    -------
    numpy.ndarray of int64
        Ascending positions of the interactions to keep (all of them when nothing repeats).
    """
    key = _pair_keys(np.asarray(users), np.asarray(items))
    _, repeated = repeated_keys(key)
    if not repeated.any():
        return np.arange(len(key), dtype=np.int64)
    _, _, latest = latest_of_repeats(key, np.flatnonzero(repeated), timestamps)
    keep = np.sort(np.concatenate([np.flatnonzero(~repeated), latest]))
    _warn_dropped(len(key) - len(keep), source, timestamps is not None)
    return keep


def _pair_keys(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """One int64 per (user, item) pair, equal exactly when the pairs are equal."""
    if len(users) != len(items):
        raise DataError(f"users and items differ in length ({len(users)} and {len(items)})")
    users = _as_codes(users)
    items = _as_codes(items)
    n_items = int(items.max()) + 1 if len(items) else 1
    return users * n_items + items


def _as_codes(ids: np.ndarray) -> np.ndarray:
    if ids.dtype.kind in "iu" and (len(ids) == 0 or ids.min() >= 0):
        return ids.astype(np.int64, copy=False)
    codes, _ = pd.factorize(ids)
    return codes.astype(np.int64, copy=False)


def _warn_dropped(n_dropped: int, source: str | None, by_time: bool) -> None:
    where = f" in {source}" if source else ""
    rule = "the latest by timestamp" if by_time else "the last one"
    warnings.warn(
        f"{n_dropped} duplicate (user, item) interactions dropped{where}; kept {rule} of each pair",
        DuplicateInteractionsWarning,
        stacklevel=3,
    )


def binarize(data: Interactions, threshold: float = 3.5) -> Interactions:
    """Keep the ratings above ``threshold`` as implicit positives.

    Parameters
    ----------
    data : Interactions
        Explicit ratings.
    threshold : float
        Ratings strictly greater than this are kept (3.5 keeps 4 and 5 stars, as Liang et al. do).

    Returns
    -------
    Interactions
        Implicit (``explicit=False``) interactions with value 1, timestamps kept. The user and
        item vocabularies are unchanged, so users or items may be left with no interactions; use
        :func:`filter_min_counts` to drop them.

    Raises
    ------
    DataError
        If ``data`` is already implicit (it holds no ratings to compare).
    EmptyDataError
        If no rating is above ``threshold``.
    """
    if not data.explicit:
        raise DataError("binarize needs explicit ratings, but the data is already implicit")
    rows, cols, values, timestamps = data.to_arrays()
    keep = values > threshold
    if not keep.any():
        raise EmptyDataError(f"no rating is above the threshold {threshold}")
    return Interactions.from_indices(
        rows[keep], cols[keep], np.ones(int(keep.sum()), np.float32),
        None if timestamps is None else timestamps[keep],
        user_ids=data.user_ids, item_ids=data.item_ids, explicit=False,
        item_titles=data.item_titles,
    )


def filter_min_counts(data: Interactions, *, min_user: int = 0, min_item: int = 0) -> Interactions:
    """Drop rare items, then light users, in one pass, as Liang et al.'s reference code does.

    Items with fewer than ``min_item`` interactions are removed first; users are then counted on
    what is left and those with fewer than ``min_user`` removed. The pass is not repeated, so an
    item may end below ``min_item`` after users are removed (as in the reference code). Users and
    items left with no interactions are dropped from the vocabularies, which keep their order.

    Parameters
    ----------
    data : Interactions
        Explicit or implicit interactions.
    min_user : int
        Minimum number of interactions a user needs (after the item filter) to be kept.
    min_item : int
        Minimum number of interactions an item needs to be kept.

    Returns
    -------
    Interactions
        The remaining interactions with compacted vocabularies.

    Raises
    ------
    ConfigError
        If a minimum is negative.
    EmptyDataError
        If no interaction remains; the message says which filter removed the last ones.
    """
    for name, value in (("min_user", min_user), ("min_item", min_item)):
        if value < 0:
            raise ConfigError(f"{name} must be >= 0, got {value}")
    rows, cols, values, timestamps = data.to_arrays()
    keep = np.bincount(cols, minlength=data.n_items)[cols] >= min_item
    if not keep.any():
        raise EmptyDataError(f"no item has at least min_item={min_item} interactions")
    keep &= np.bincount(rows[keep], minlength=data.n_users)[rows] >= min_user
    if not keep.any():
        raise EmptyDataError(
            f"no user has at least min_user={min_user} interactions "
            f"(counted after the min_item={min_item} filter)"
        )
    return _compact(data, rows[keep], cols[keep], values[keep],
                    None if timestamps is None else timestamps[keep])


def _compact(
    data: Interactions,
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    timestamps: np.ndarray | None,
) -> Interactions:
    """Rebuild with only the users and items that still have interactions, in their old order."""
    kept_users = np.flatnonzero(np.bincount(rows, minlength=data.n_users))
    kept_items = np.flatnonzero(np.bincount(cols, minlength=data.n_items))
    return Interactions.from_indices(
        np.searchsorted(kept_users, rows), np.searchsorted(kept_items, cols), values, timestamps,
        user_ids=data.user_ids[kept_users], item_ids=data.item_ids[kept_items],
        explicit=data.explicit, item_titles=data.item_titles,
    )


def preprocess_for_model(data: Interactions, options: Preprocessing, implicit: bool) -> Interactions:
    """The preprocessing a run asks for: binarise (models of implicit feedback only, when
    ``options.threshold`` is set), then filter by ``options.min_user`` / ``options.min_item``."""
    if implicit and data.explicit and options.threshold is not None:
        data = binarize(data, threshold=float(options.threshold))
    if options.min_user or options.min_item:
        data = filter_min_counts(data, min_user=options.min_user, min_item=options.min_item)
    return data


def split_light_users(data: Interactions, min_user: int) -> tuple[Interactions, np.ndarray]:
    """``data`` and the rows of its users with fewer than ``min_user`` interactions (and at least
    one): with your own data they are trained on and get recommendations, but are not held out
    for evaluation, where too short a history has nothing to fold in or to predict."""
    counts = np.diff(data.matrix.indptr)
    return data, np.flatnonzero((counts > 0) & (counts < min_user)).astype(np.int64)
