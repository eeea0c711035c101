"""Raw ids in, raw ids out: top-n recommendations as DataFrames, with business filters.

:meth:`Recommender.recommend` works on CSR rows and column indices, which is what evaluation and
batch scoring want. People and services hold *raw* ids ("movie 50", "user 196"), so this mixin,
inherited by :class:`~aerec.models.base.Recommender`, maps at the edge:

* :meth:`RawIdMixin.recommend_items`: a history of raw item ids (with ratings for rating models)
  in, a DataFrame ``item, score[, title]`` out;
* :meth:`RawIdMixin.recommend_users`: users the model was trained on, by raw id;
* ``exclude`` / ``allow``: item lists that are never recommended / the only ones that may be
  (out of stock, already shown, not licensed in a region). ``exclude`` wins over ``allow``.

Unknown ids are never fatal on their own: they are dropped, listed in the result's ``attrs``
(``unknown_items``, ``unknown_users``, ``unknown_exclude``, ``unknown_allow``) and reported once
with an :class:`UnknownIdsWarning`. Only when nothing usable is left (every requested user
unknown, an ``allow`` list with no known item) is it a :class:`DataError`; a history with no known
item is an :class:`~aerec.errors.EmptyHistoryError` unless ``fallback="popularity"`` asks for the
items most training users had instead (the CLI's ``--fallback popularity`` and the service's
``"fallback"`` field are the same choice, :func:`check_fallback`).

The model reads these attributes (``fit`` sets them; a loaded model has its ids and titles from
its file, and :meth:`RawIdMixin.set_known_users` gives it back its users):

``item_ids_``
    Raw id of each item column.
``item_titles_``
    Optional dict raw item id -> title; when not empty, results carry a ``title`` column.
``user_ids_``, ``user_items_``
    Raw ids and CSR rows (users x items) of the training users, for :meth:`recommend_users`.
``item_counts_``
    Training users per item (saved with the model), for the popularity fallback.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from aerec.errors import ConfigError, DataError, EmptyHistoryError, NotFittedError
from aerec.histories import check_value, default_value, one_row
from aerec.models.budget import score_rows

__all__ = ["RawIdMixin", "ItemFilter", "UnknownIdsWarning", "item_filter", "check_n", "shown_ids",
           "FALLBACKS", "check_fallback", "empty_history_error"]

#: What may stand in for recommendations when a history holds no known item.
FALLBACKS = ("popularity",)

#: Users scored together by :meth:`RawIdMixin.recommend_users` (bounds memory to a batch of scores).
_USER_BATCH = 1024
#: How many unknown ids a message lists before saying "and N more".
_SHOWN = 10


class UnknownIdsWarning(UserWarning):
    """Some raw ids given to a model are not in its vocabulary; they were ignored."""


@dataclass(frozen=True)
class ItemFilter:
    """Items that must not be recommended, as a mask over the model's item columns.

    Attributes
    ----------
    blocked : numpy.ndarray of bool or None
        ``(n_items,)``, True for an item that is never recommended; None when nothing is blocked.
        ``(batch, n_items)`` gives each row its own (the service batches requests with their own
        filters; :meth:`RawIdMixin.recommend_filtered` broadcasts either shape over the rows).
    unknown_exclude, unknown_allow : list of str
        Raw ids of the ``exclude`` / ``allow`` lists that the model does not know (ignored).
    """

    blocked: np.ndarray | None = None
    unknown_exclude: list[str] = field(default_factory=list)
    unknown_allow: list[str] = field(default_factory=list)


def item_filter(
    item_ids: np.ndarray,
    exclude: Iterable[Any] | None = None,
    allow: Iterable[Any] | None = None,
    *,
    index: Mapping[str, int] | None = None,
) -> ItemFilter:
    """Resolve ``exclude`` and ``allow`` lists of raw item ids against a model's items.

    Parameters
    ----------
    item_ids : numpy.ndarray
        The model's raw item ids (``model.item_ids_``), in column order.
    exclude : iterable of ids, optional
        Items never recommended.
    allow : iterable of ids, optional
        When given, only these items may be recommended (minus ``exclude``).
    index : mapping, optional
        Raw id -> column, when the caller holds one (a service answering many requests).

    Returns
    -------
    ItemFilter

    Raises
    ------
    DataError
        If ``allow`` is given but names no item the model knows (nothing could be recommended).
    """
    if exclude is None and allow is None:
        return ItemFilter()
    if index is None:
        index = _index_of(item_ids)
    blocked = np.zeros(len(item_ids), dtype=bool)
    unknown_allow: list[str] = []
    if allow is not None:
        allowed, unknown_allow = _columns(index, _id_list(allow, "allow"))
        if not allowed:
            raise DataError(_none_known("allow list", unknown_allow, "item"))
        blocked[:] = True
        blocked[allowed] = False
    unknown_exclude: list[str] = []
    if exclude is not None:
        excluded, unknown_exclude = _columns(index, _id_list(exclude, "exclude"))
        blocked[excluded] = True
    return ItemFilter(blocked, unknown_exclude, unknown_allow)


def check_n(n: Any) -> int:
    """``n`` as an int, or a one-line :class:`ConfigError` unless it is a positive integer."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    return int(n)


def check_fallback(fallback: Any) -> str | None:
    """``fallback`` checked: None (an empty history is an error) or one of :data:`FALLBACKS`."""
    if fallback is not None and fallback not in FALLBACKS:
        raise ConfigError(f"fallback must be None or one of {', '.join(FALLBACKS)}, got "
                          f"{fallback!r}")
    return fallback


def empty_history_error(unknown: list[str], hint: str = 'fallback="popularity"'
                        ) -> EmptyHistoryError:
    """The one error of a history with no known item, in Python, the CLI and the service.

    ``hint`` is how the caller's interface asks for the popularity fallback instead.
    """
    what = (_none_known("history", unknown, "item") if unknown
            else "the history is empty: give at least one item id")
    return EmptyHistoryError(f"{what}; {hint} recommends the most popular items instead")


class RawIdMixin:
    """Recommendations by raw ids, with ``exclude`` / ``allow`` filters (see the module docstring)."""

    # -- the filtered batch top-n everything here rests on ----------------------------------------
    def recommend_filtered(
        self, user_items: sp.csr_matrix, n: int = 10, item_filter: ItemFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`recommend` (history excluded) with a filter's blocked items left out too.

        Returns
        -------
        ids, scores : numpy.ndarray
            ``(batch, min(n, n_items))`` column indices and scores, best first. When a row has
            fewer than ``n`` items left to recommend, its last entries have score ``-inf``:
            callers drop them (``numpy.isneginf``).
        """
        user_items = self._check_batch(user_items)
        blocked = None if item_filter is None else item_filter.blocked  # broadcast over the rows
        ids, scores = self._top_n(user_items, check_n(n), exclude_seen=True, blocked=blocked)
        return ids.cpu().numpy(), scores.cpu().numpy()

    def recommend_popular(
        self, n: int = 10, item_filter: ItemFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The popularity fallback: the items most training users had, as
        :meth:`recommend_filtered` returns items (a ``(1, n)`` batch; the score is the count).

        Ties keep the item order. A filter's blocked items are left out (score ``-inf``); a
        ``(batch, n_items)`` mask uses its first row.

        Raises
        ------
        DataError
            For a model saved without its item counts (by an aerec before they were kept).
        """
        self._check_fitted()
        counts = getattr(self, "item_counts_", None)
        if counts is None:
            raise DataError(f"this {self.name} model keeps no item counts (saved by an older "
                            "aerec), so it has no popularity fallback; train it again")
        scores = np.asarray(counts, np.float32)
        if item_filter is not None and item_filter.blocked is not None:
            blocked = np.asarray(item_filter.blocked, bool)
            scores = np.where(blocked if blocked.ndim == 1 else blocked[0], -np.inf, scores)
        top = np.argsort(-scores, kind="stable")[:check_n(n)]
        return top[None], scores[top][None].astype(np.float32)

    # -- raw item histories -----------------------------------------------------------------------
    def recommend_items(
        self,
        history: Iterable[Any] | Mapping[Any, float],
        n: int = 10,
        exclude: Iterable[Any] | None = None,
        allow: Iterable[Any] | None = None,
        *,
        fallback: str | None = None,
    ):
        """Top-``n`` items for a history of raw item ids, folded in without retraining.

        Parameters
        ----------
        history : list of ids, dict id -> rating, or list of (id, rating)
            The user's items. Without a rating an item counts 1 for implicit models and the top
            of the training rating range for rating models ("items I liked").
        n : int
            Number of items.
        exclude, allow : iterable of ids, optional
            Business filters (see :func:`item_filter`); the history is always excluded.
        fallback : {None, "popularity"}
            What a history with no known item gets: an :class:`~aerec.errors.EmptyHistoryError`
            (None, the default), or the items most training users had (``"popularity"``; the
            score is that count).

        Returns
        -------
        pandas.DataFrame
            Columns ``item`` (raw id), ``score``, plus ``title`` when the model knows titles; best
            first; fewer than ``n`` rows when fewer items are left. ``attrs`` lists the ignored
            ids under ``unknown_items``, ``unknown_exclude`` and ``unknown_allow``, and under
            ``fallback`` what stood in for the model's ranking (``"popularity"``, else None).

        Raises
        ------
        EmptyHistoryError
            An empty history, or one whose items are all unknown, without a ``fallback``.
        DataError
            A non-finite rating, or an ``allow`` list without a known item.
        ConfigError
            If ``n`` is not a positive integer.
        """
        self._check_fitted()
        n = check_n(n)
        fallback = check_fallback(fallback)
        row, unknown = _history_row(self, history)
        if row.nnz == 0 and fallback is None:
            raise empty_history_error(unknown)
        filt = item_filter(self.item_ids_, exclude, allow, index=self._item_index())
        used = fallback if row.nnz == 0 else None
        ids, scores = (self.recommend_popular(n, filt) if used
                       else self.recommend_filtered(row, n, filt))
        keep = ~np.isneginf(scores[0])
        frame = self._item_frame(ids[0][keep], scores[0][keep])
        _report(frame, unknown_items=unknown, unknown_exclude=filt.unknown_exclude,
                unknown_allow=filt.unknown_allow)
        frame.attrs["fallback"] = used
        return frame

    # -- known users ----------------------------------------------------------------------------
    def set_known_users(self, data: Any) -> None:
        """Give the model the histories of the users it was trained on, and the item titles.

        ``fit`` does this itself; a model loaded from disk keeps no user data, so call it with the
        run's training data (``split.train``) before :meth:`recommend_users`.

        Parameters
        ----------
        data : Interactions or scipy.sparse matrix
            Users x items on the model's item columns. A bare matrix has user ids ``"0"..``.
        """
        from aerec.data.interactions import Interactions

        self._check_fitted()
        if isinstance(data, Interactions):
            if not np.array_equal(np.asarray(data.item_ids, str), np.asarray(self.item_ids_, str)):
                raise DataError("the users' item columns are not the model's items, in its order")
            matrix, user_ids, titles = data.matrix, np.asarray(data.user_ids, str), data.item_titles
        elif sp.issparse(data):
            matrix, user_ids, titles = data, np.arange(data.shape[0]).astype(str), {}
        else:
            raise TypeError("data must be an Interactions or a scipy.sparse matrix (users x items)")
        self.user_items_ = self._check_batch(matrix)
        self.user_ids_ = user_ids
        if titles:
            self.item_titles_ = dict(titles)
        self._user_index = None  # rebuilt on first use

    def recommend_users(
        self,
        user_ids: Iterable[Any],
        n: int = 10,
        exclude: Iterable[Any] | None = None,
        allow: Iterable[Any] | None = None,
    ):
        """Top-``n`` items for users the model was trained on, by raw user id.

        Each user's training items are excluded. Users are scored in batches, so a long list
        takes bounded memory.

        Parameters
        ----------
        user_ids : iterable of ids
            Raw ids of training users (repeats are answered once).
        n : int
            Number of items per user.
        exclude, allow : iterable of ids, optional
            Business filters, the same for every user (see :func:`item_filter`).

        Returns
        -------
        pandas.DataFrame
            Columns ``user``, ``rank`` (1 = best), ``item``, ``score``, plus ``title`` when the
            model knows titles. ``attrs`` lists ignored ids under ``unknown_users``,
            ``unknown_exclude`` and ``unknown_allow``.

        Raises
        ------
        NotFittedError
            If the model holds no training users (see :meth:`set_known_users`).
        DataError
            If no id is given or none is a training user.
        """
        import pandas as pd

        self._check_fitted()
        n = check_n(n)
        if getattr(self, "user_items_", None) is None:
            raise NotFittedError(
                f"{self.name} holds no training users (a loaded model keeps none): call "
                "model.set_known_users(split.train) first, or use recommend_items"
            )
        wanted = list(dict.fromkeys(_id_list(user_ids, "user_ids")))
        if not wanted:
            raise DataError("no user ids given")
        if getattr(self, "_user_index", None) is None:
            self._user_index = {u: k for k, u in enumerate(self.user_ids_)}
        rows = [self._user_index.get(u, -1) for u in wanted]
        unknown = [u for u, r in zip(wanted, rows) if r < 0]
        known = np.array([r for r in rows if r >= 0], dtype=np.int64)
        if len(known) == 0:
            raise DataError(_none_known("user list", unknown, "training user"))
        filt = item_filter(self.item_ids_, exclude, allow, index=self._item_index())
        parts = []
        step = score_rows(self.n_items_, _USER_BATCH)  # bounded at any catalogue size
        for start in range(0, len(known), step):
            batch = known[start:start + step]
            ids, scores = self.recommend_filtered(self.user_items_[batch], n, filt)
            parts.append(self._user_frame(self.user_ids_[batch], ids, scores))
        frame = pd.concat(parts, ignore_index=True)
        _report(frame, unknown_users=unknown, unknown_exclude=filt.unknown_exclude,
                unknown_allow=filt.unknown_allow)
        return frame

    def _item_index(self) -> dict[str, int]:
        """Raw item id -> column, built once per ``item_ids_`` (a refit makes a new array)."""
        cached = getattr(self, "_item_index_cache", None)
        if cached is None or cached[0] is not self.item_ids_:
            cached = self._item_index_cache = (self.item_ids_, _index_of(self.item_ids_))
        return cached[1]

    # -- frames ---------------------------------------------------------------------------------
    def _item_frame(self, ids: np.ndarray, scores: np.ndarray):
        import pandas as pd

        items = np.asarray(self.item_ids_, str)[ids]
        frame = pd.DataFrame({"item": items, "score": scores.astype(np.float32)})
        titles = getattr(self, "item_titles_", None)
        if titles:
            frame["title"] = [titles.get(i, "") for i in items]
        return frame

    def _user_frame(self, users: np.ndarray, ids: np.ndarray, scores: np.ndarray):
        keep = ~np.isneginf(scores)
        frame = self._item_frame(ids[keep], scores[keep])
        ranks = np.broadcast_to(np.arange(1, ids.shape[1] + 1, dtype=np.int32), ids.shape)
        frame.insert(0, "rank", ranks[keep])
        frame.insert(0, "user", np.repeat(np.asarray(users, str), ids.shape[1])[keep.ravel()])
        return frame


# -- helpers --------------------------------------------------------------------------------------
def _id_list(ids: Any, what: str) -> list[str]:
    """Raw ids as strings; a lone string or number is one id (not a sequence of characters)."""
    if isinstance(ids, (str, bytes, int, np.integer)):
        return [str(ids)]
    try:
        return [str(i) for i in ids]
    except TypeError:
        raise DataError(f"{what} must be a list of ids, got {type(ids).__name__}") from None


def _index_of(item_ids: np.ndarray) -> dict[str, int]:
    return {str(i): k for k, i in enumerate(np.asarray(item_ids).tolist())}


def _columns(index: Mapping[str, int], ids: list[str]) -> tuple[list[int], list[str]]:
    cols = [index.get(i, -1) for i in ids]
    return [c for c in cols if c >= 0], [i for i, c in zip(ids, cols) if c < 0]


def _history_entries(history: Any) -> list[tuple[str, float | None]]:
    """``(raw id, rating or None)`` pairs from a list of ids, a dict or a list of pairs."""
    if isinstance(history, Mapping):
        return [(str(i), r) for i, r in history.items()]
    entries = []
    for entry in [history] if isinstance(history, (str, int, np.integer)) else history:
        if isinstance(entry, (tuple, list)):
            if len(entry) != 2:
                raise DataError(f"history entry {entry!r}: give an id or an (id, rating) pair")
            entries.append((str(entry[0]), entry[1]))
        else:
            entries.append((str(entry), None))
    return entries


def _history_row(model: Any, history: Any) -> tuple[sp.csr_matrix, list[str]]:
    """A one-row CSR history on the model's columns, and the raw ids the model does not know.

    Python's counterpart of :func:`aerec.histories.history_from_items` (which parses ``ID:RATING``
    strings): this one takes dicts and (id, rating) pairs; both fill a row the same way.
    """
    if history is None:
        return one_row({}, model.n_items_), []
    default = default_value(model)
    index = model._item_index()
    values: dict[int, float] = {}
    unknown: list[str] = []
    for raw, rating in _history_entries(history):
        if rating is None:
            value = default
        else:
            try:
                value = float(rating)
            except (TypeError, ValueError):
                raise DataError(f"item {raw!r}: rating {rating!r} is not a number") from None
            if not math.isfinite(value):
                raise DataError(f"item {raw!r}: rating {rating!r} is not a finite number")
        col = index.get(raw)
        if col is None:
            unknown.append(raw)
        else:
            values[col] = check_value(model, raw, value)  # repeated: the last rating counts
    return one_row(values, model.n_items_), unknown


def shown_ids(ids: list[str]) -> str:
    """Ids for a message: the first ten, then "and N more"."""
    more = f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else ""
    return ", ".join(ids[:_SHOWN]) + more


def _none_known(what: str, unknown: list[str], kind: str) -> str:
    return f"no id of the {what} is a known {kind} of the model (unknown: {shown_ids(unknown)})"


def _report(frame: Any, **unknown: list[str]) -> None:
    """Put the ignored ids in ``frame.attrs`` and warn once about all of them."""
    frame.attrs.update({k: list(v) for k, v in unknown.items()})
    said = [f"{k.removeprefix('unknown_')}: {shown_ids(v)}" for k, v in unknown.items() if v]
    if said:
        warnings.warn(f"unknown ids ignored ({'; '.join(said)})", UnknownIdsWarning, stacklevel=3)
