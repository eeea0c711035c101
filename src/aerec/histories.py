"""The histories that recommendations are made for, built one way for the CLI, Python and HTTP.

Two sources, one shape (a one-row CSR matrix on the model's item columns):

* :func:`history_from_items`: raw item ids a caller names, each optionally ``ID:RATING``;
* :func:`known_user_history`: everything a run holds about one of its users, the held-out test
  targets included, so that nothing the user already has is recommended back, whatever the
  split kind. (Evaluation never reads these histories: it folds in each part's ``fold_in`` and
  keeps the targets hidden.)

Every value of a history is checked by :func:`check_value` against what the model was trained
on: a rating outside the training scale or a non-positive implicit value is refused, not clipped.

:func:`finite_top` drops what :meth:`~aerec.models.Recommender.recommend` ranks with a non-finite
score (the history itself, scored ``-inf``), so that a large ``n`` returns only items that can be
recommended and no answer ever holds ``NaN`` or ``Infinity``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np
import scipy.sparse as sp

from aerec.data.splits import Split
from aerec.errors import DataError

if TYPE_CHECKING:  # models import this module (raw_ids builds its rows here)
    from aerec.models import Recommender

__all__ = ["check_value", "default_value", "finite_top", "history_from_items", "history_parts",
           "known_user_history", "one_row"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def default_value(model: Recommender) -> float:
    """The value of an item named without a rating.

    1 for implicit-feedback models; the top of the training rating range for rating models, so
    that "items I liked" means the same to both kinds.
    """
    return 1.0 if model.implicit else float(model.rating_range_[1])


def history_from_items(
    model: Recommender, entries: Iterable[str], *, index: Mapping[str, int] | None = None
) -> tuple[sp.csr_matrix, list[str]]:
    """A one-row history from raw item ids, and the ids the model does not know.

    Parameters
    ----------
    model : Recommender
        A fitted model; its ``item_ids_`` give the columns.
    entries : iterable of str
        Raw item ids. An entry that is not itself a known id but has the form ``ID:RATING`` gives
        the item ``ID`` that value (so ids that contain ``:`` still work); an unknown id is listed
        without its rating. An item named twice keeps its last value.
    index : mapping, optional
        Raw item id -> column of ``model``, when the caller already holds one (a service answering
        many requests); built from ``model.item_ids_`` otherwise.

    Returns
    -------
    history : scipy.sparse.csr_matrix
        ``(1, n_items)`` float32.
    unknown : list of str
        Ids the model does not know, each once, in the order given.

    Raises
    ------
    DataError
        If the rating of a known item is not a number or is refused by :func:`check_value`, any
        rating is not finite, or an entry is a known id followed by more than ``:RATING``
        (``50:5:3``).
    """
    if index is None:
        index = {str(item): k for k, item in enumerate(np.asarray(model.item_ids_).tolist())}
    default = default_value(model)
    values: dict[int, float] = {}
    unknown: dict[str, None] = {}
    for entry in entries:
        entry = str(entry)
        if entry in index:
            values[index[entry]] = default
            continue
        raw, sep, rating = entry.rpartition(":")
        if sep and raw in index:
            values[index[raw]] = check_value(model, raw, _rating(entry, rating))
            continue
        _check_not_malformed(entry, index)
        if sep and _is_number(rating):
            _rating(entry, rating)  # an unknown item still may not carry NaN
            unknown[raw] = None
        else:  # an id the model does not know, ':' and all
            unknown[entry] = None
    return one_row(values, model.n_items_), list(unknown)


def known_user_history(split: Split, user_id: str) -> sp.csr_matrix:
    """Everything a run holds about one of its users, the test targets included.

    On a strong-generalization split that is a training user's row, or a held-out user's fold-in
    and targets. On given and rating splits, where the same users are in every part, it is the
    whole training row (the remainder models were fitted on *and* the validation carve) and the
    user's rows of the test file: nothing of the user's data comes back as a recommendation.
    Evaluation does not use it, and keeps hiding the targets from the models.

    Raises
    ------
    DataError
        If no part of the split holds ``user_id``.
    """
    user_id = str(user_id)
    values: dict[int, float] = {}
    found = False
    for part in history_parts(split):
        row = part.user_index.get(user_id)
        if row is None:
            continue
        found = True
        start, stop = part.matrix.indptr[row], part.matrix.indptr[row + 1]
        for col, value in zip(part.matrix.indices[start:stop].tolist(),
                              part.matrix.data[start:stop].tolist()):
            values.setdefault(col, value)  # the parts agree where they overlap
    if not found:
        raise DataError(f"user {user_id!r} is not in this run's data; pass --items to fold in a history")
    return one_row(values, split.train.n_items)


def history_parts(split: Split) -> tuple:
    """The parts of ``split`` a known user's history is made of, in order of precedence: where
    two hold the same (user, item), the value of the first counts."""
    return (split.test.fold_in, split.train, split.validation.fold_in, split.validation.targets,
            split.test.targets)


def finite_top(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One row of ``recommend``'s answer without its non-finite scores (kept in order)."""
    ids, scores = np.asarray(ids), np.asarray(scores)
    keep = np.isfinite(scores)
    return ids[keep], scores[keep]


def one_row(values: dict[int, float], n_items: int) -> sp.csr_matrix:
    """A ``(1, n_items)`` float32 CSR row holding ``values`` (column -> value)."""
    cols = np.array(sorted(values), np.int32)
    data = np.array([values[c] for c in cols.tolist()], np.float32)
    return sp.csr_matrix((data, cols, np.array([0, len(cols)], np.int32)), shape=(1, n_items))


def check_value(model: Recommender, item: str, value: float) -> float:
    """``value`` as the history value of ``item``, or a :class:`DataError` if the model cannot
    score it.

    A rating model refuses a rating outside its training scale (``rating_range_``): a network
    fed ``50:1000`` on a 1-5 scale extrapolates (to 881), and clipping would hide a mistake in
    the caller's data. An implicit model refuses a value that is not positive: its inputs are
    presence (1) or a count, and a zero or negative entry would reach the encoder as a negative
    signal it was never trained on.
    """
    if model.implicit:
        if not value > 0:
            raise DataError(f"item {item!r}: value {value:g} is not positive; an implicit-feedback "
                            "history holds items (1) or positive counts")
        return value
    low, high = model.rating_range_
    if not low <= value <= high:
        raise DataError(f"item {item!r}: rating {value:g} is outside the training scale "
                        f"{low:g} to {high:g} (refused, not clipped)")
    return value


def _check_not_malformed(entry: str, index: Mapping[str, int]) -> None:
    """DataError for an entry that names a known item and then more than ``:RATING`` (``50:5:3``):
    read as an unknown id it would be dropped without a word."""
    start = 0
    while (colon := entry.find(":", start)) >= 0:
        if entry[:colon] in index:
            raise DataError(f"item entry {entry!r}: {entry[:colon]!r} is an item, and "
                            f"{entry[colon:]!r} after it is not ':RATING'; give ID or ID:RATING")
        start = colon + 1


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _rating(entry: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"item {entry!r}: the rating after ':' must be a number") from None
    # histories are float32: a larger number would turn into infinity there
    if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
        raise DataError(f"item {entry!r}: the rating after ':' must be a finite number "
                        f"(at most {_FLOAT32_MAX:.3g} in size)")
    return value
