"""Splits for rating prediction (weak generalization: test users are training users).

Three protocols, each returning the same :class:`~aerec.data.splits.Split` shape:

* :func:`canonical_fold`: the folds shipped with MovieLens 100K, ``u1.base`` / ``u1.test`` ...
  ``u5``, plus ``ua`` and ``ub``, used as published;
* :func:`random_holdout`: a random share of the ratings (for example 10 %) is the test set; repeated
  over seeds it gives a mean and a standard deviation;
* :func:`time_split`: ratings before a cutoff date train, ratings from it on test, and test ratings
  of users or items with no training rating are dropped (the protocol of Kuchaiev & Ginsburg on
  Netflix).

In all three, validation is carved out of the training ratings only (:func:`carve_validation`; for
the time split, the latest training ratings, :func:`carve_latest`), so model selection never sees
the test set. The shape of the result::

    train       = training ratings minus validation ratings (what models are fitted on)
    validation  = HeldOut(fold_in=train, targets=validation ratings)
    test        = HeldOut(fold_in=all training ratings, targets=test ratings)

with one row per user, in the same order everywhere. In the canonical folds and the random holdout,
test ratings of users or items that have no training rating are kept and count in the RMSE: models
predict them with their fallback rating (the training mean), as the AutoRec paper does with its
default rating; ``params`` counts them.

Each protocol is a split kind of :data:`aerec.data.split_kinds.SPLIT_KINDS` (``u1`` ... ``u5``,
``ua``, ``ub``, ``random``, ``time``), which ``aerec train --split`` names.
"""

from __future__ import annotations

import dataclasses
import re
from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd

from aerec.data.interactions import Interactions
from aerec.data.options import DataSource, Preprocessing, SplitOptions
from aerec.data.preprocess import preprocess_for_model
from aerec.data.splits import HeldOut, Split
from aerec.errors import ConfigError, DataError, EmptyDataError

__all__ = [
    "CANONICAL_FOLDS",
    "canonical_fold",
    "carve_latest",
    "carve_validation",
    "parse_cutoff",
    "random_holdout",
    "time_split",
]

#: The given train / test pairs of MovieLens 100K: u1..u5 (five disjoint 20 % test sets) and ua, ub
#: (ten test ratings per user).
CANONICAL_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
DEFAULT_VALIDATION_FRACTION = 0.1


# -- protocols ------------------------------------------------------------------------------------
def canonical_fold(
    directory: str | Path,
    fold: str | int,
    *,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    seed: int = 98765,
) -> Split:
    """The ML-100K fold ``u{k}.base`` / ``u{k}.test`` as published, plus a validation carve.

    Parameters
    ----------
    directory : str or Path
        The ``ml-100k`` folder.
    fold : str or int
        ``1``..``5`` or ``"u1"``..``"u5"``, ``"ua"``, ``"ub"``.
    validation_fraction : float
        Share of the ``.base`` ratings held out for model selection, in (0, 1).
    seed : int
        Seed of the validation carve.

    Returns
    -------
    Split
        ``kind`` is the fold name. Users and items are those of either file (ids sorted
        numerically), so every test rating is kept; ``params`` counts the test ratings whose
        item (``test_ratings_unseen_item``) or user (``test_ratings_unseen_user``) has no
        training rating.
    """
    from aerec.data.readers import read_item_titles, read_ml100k

    name = _fold_name(fold)
    directory = Path(directory)
    base = read_ml100k(directory / f"{name}.base")
    if (directory / "u.item").is_file():  # the titles load_dataset("ml-100k") gives
        base = dataclasses.replace(base, item_titles=read_item_titles(directory, "ml-100k"))
    test = read_ml100k(directory / f"{name}.test")
    train, test = _common_vocabulary(base, test)
    params = {"fold": name, "directory": str(directory)}
    return _weak_split(train, test, name, params, validation_fraction, seed)


def random_holdout(
    data: Interactions,
    *,
    test_fraction: float = 0.1,
    seed: int = 98765,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
) -> Split:
    """Hold out a random share of the ratings as the test set (per rating, not per user).

    ``round(test_fraction * n)`` ratings are drawn without replacement with
    ``numpy.random.default_rng(seed)``; the validation carve then draws from the remaining ones
    with ``default_rng([seed, 1])``. The same seed gives the same split.

    Parameters
    ----------
    data : Interactions
        All ratings.
    test_fraction : float
        Share of the ratings in the test set, in (0, 1).
    seed : int
        Seed of the draws.
    validation_fraction : float
        Share of the training ratings held out for model selection.

    Returns
    -------
    Split
        ``kind="random"``.
    """
    _check_nonempty(data)
    _check_fraction("test_fraction", test_fraction)
    _check_seed(seed)
    n_test = int(round(test_fraction * data.nnz))
    if not 0 < n_test < data.nnz:
        raise ConfigError(f"test_fraction={test_fraction} leaves no test or no training ratings "
                          f"out of {data.nnz}")
    is_test = np.zeros(data.nnz, bool)
    is_test[np.random.default_rng(seed).permutation(data.nnz)[:n_test]] = True
    params = {"test_fraction": float(test_fraction), "seed": int(seed)}
    return _weak_split(data.mask(~is_test), data.mask(is_test), "random", params,
                       validation_fraction, seed)


def time_split(
    data: Interactions,
    cutoff: str | int | float,
    *,
    end: str | int | float | None = None,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
) -> Split:
    """Train on ratings before ``cutoff``, test on ratings from ``cutoff`` on (before ``end``).

    Test ratings by users or of items with no training rating are dropped (counted in
    ``params``), as Kuchaiev & Ginsburg (2017) do on Netflix; users and items with no training
    rating leave the vocabularies. Validation is the latest ``validation_fraction`` of the training
    ratings (:func:`carve_latest`), so selection also looks forward in time.

    Parameters
    ----------
    data : Interactions
        Ratings with timestamps (Unix seconds).
    cutoff, end : str, int or float
        A date (``"2005-12-01"``), an ISO date-time, or Unix seconds; UTC.
    validation_fraction : float
        Share of the training ratings held out, the latest ones.

    Returns
    -------
    Split
        ``kind="time"``; ``params`` holds the cutoff (as given and in seconds) and the counts of
        dropped test ratings.

    Raises
    ------
    DataError
        If ``data`` has no timestamps, or either side of the cutoff is empty.
    """
    _check_nonempty(data)
    if data.timestamps is None:
        raise DataError("a time split needs timestamps, and this data has none")
    start_s = parse_cutoff(cutoff)
    end_s = None if end is None else parse_cutoff(end)
    if end_s is not None and end_s <= start_s:
        raise ConfigError(f"end ({end}) must come after the cutoff ({cutoff})")
    ts = data.timestamps
    before = ts < start_s
    after = ~before if end_s is None else (ts >= start_s) & (ts < end_s)
    if not before.any():
        raise DataError(f"no rating is before the cutoff {cutoff}")
    if not after.any():
        raise DataError(f"no rating is from the cutoff {cutoff} on")
    rows, cols, _, _ = data.to_arrays()
    users = np.flatnonzero(np.bincount(rows[before], minlength=data.n_users))
    items = np.flatnonzero(np.bincount(cols[before], minlength=data.n_items))
    known_user = np.isin(rows, users)
    known = known_user & np.isin(cols, items)
    params = {
        "cutoff": str(cutoff), "cutoff_seconds": int(start_s),
        "end": None if end is None else str(end), "end_seconds": None if end_s is None else int(end_s),
        "test_ratings_dropped_user": int((after & ~known_user).sum()),
        "test_ratings_dropped_item": int((after & known_user & ~known).sum()),
    }
    train = data.mask(before).select_users(users).select_items(items)
    test = data.mask(after & known).select_users(users).select_items(items)
    if test.nnz == 0:
        raise DataError(f"no test rating from {cutoff} on is by a user and of an item seen before it")
    _check_fraction("validation_fraction", validation_fraction)
    held = carve_latest(train, validation_fraction)
    params["n_validation_ratings"] = int(held.sum())
    return _assemble(train, held, test, "time", params)


# -- validation carves ----------------------------------------------------------------------------
def carve_validation(train: Interactions, fraction: float, seed: int) -> np.ndarray:
    """Mask (CSR order) of ``round(fraction * n)`` training ratings drawn at random.

    Drawn with ``numpy.random.default_rng([seed, 1])``, a stream independent of the test draw of
    :func:`random_holdout` for the same seed.
    """
    _check_fraction("validation_fraction", fraction)
    n_held = int(round(fraction * train.nnz))
    held = np.zeros(train.nnz, bool)
    held[np.random.default_rng([int(seed), 1]).permutation(train.nnz)[:n_held]] = True
    return held


def carve_latest(train: Interactions, fraction: float) -> np.ndarray:
    """Mask (CSR order) of the latest ``round(fraction * n)`` training ratings whose user and item
    both keep an earlier rating (the others stay in training, so nothing is lost).

    Ties in time are broken by position, so the result is deterministic.
    """
    _check_fraction("validation_fraction", fraction)
    n_held = int(round(fraction * train.nnz))
    order = np.lexsort((np.arange(train.nnz), -train.timestamps))  # latest first
    held = np.zeros(train.nnz, bool)
    held[order[:n_held]] = True
    rows, cols, _, _ = train.to_arrays()
    user_left = np.bincount(rows[~held], minlength=train.n_users) > 0
    item_left = np.bincount(cols[~held], minlength=train.n_items) > 0
    return held & user_left[rows] & item_left[cols]


def parse_cutoff(value: str | int | float) -> int:
    """Unix seconds (UTC) of a date ``YYYY-MM-DD``, an ISO date-time or a number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"cutoff must be a date or Unix seconds, got {value!r}")
    if isinstance(value, Real):
        return int(value)
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d{9,}", text):
        return int(text)
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise ConfigError(
            f"cutoff must be a date like 2005-12-01, an ISO date-time or Unix seconds, got {value!r}"
        ) from None
    if pd.isna(stamp):
        raise ConfigError(f"cutoff {value!r} is not a date")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // 1_000_000_000)


# -- the split kinds of a run (see aerec.data.split_kinds) ----------------------------------------
def fold_kind(name: str):
    """The split kind of one canonical fold of MovieLens 100K (``u1`` ...), for a run."""
    def make(data: Interactions, test: Interactions | None, source: DataSource,
             preprocess: Preprocessing, options: SplitOptions, implicit: bool) -> Split:
        from aerec.data.datasets import find_dataset

        if source.dataset != "ml-100k":
            raise ConfigError(f"split {name} is a fold of MovieLens 100K: the data must be ml-100k")
        if preprocess.min_user or preprocess.min_item:
            raise ConfigError(f"the canonical fold {name} is used as published: set the minimum "
                              "user and item counts to 0")
        split = canonical_fold(find_dataset("ml-100k", source.data_dir), name,
                               validation_fraction=options.validation_fraction, seed=options.seed)
        if implicit:  # binarise each part as the other splits do for implicit models
            threshold = Preprocessing(threshold=preprocess.threshold)
            split = _map_parts(split, lambda part: preprocess_for_model(part, threshold, True))
        return split
    return make


def random_kind(data: Interactions, test: Interactions | None, source: DataSource,
                preprocess: Preprocessing, options: SplitOptions, implicit: bool) -> Split:
    """The ``random`` split kind of a run (:func:`random_holdout`)."""
    if test is not None:
        raise ConfigError("the random split draws its own test set: give no test file")
    data = preprocess_for_model(data, preprocess, implicit)
    return random_holdout(data, test_fraction=options.test_fraction, seed=options.seed,
                          validation_fraction=options.validation_fraction)


def time_kind(data: Interactions, test: Interactions | None, source: DataSource,
              preprocess: Preprocessing, options: SplitOptions, implicit: bool) -> Split:
    """The ``time`` split kind of a run (:func:`time_split`)."""
    if test is not None:
        raise ConfigError("the time split takes its test set after the cutoff: give no test file")
    if options.cutoff is None:
        raise ConfigError("the time split needs a cutoff date (for example 2005-12-01)")
    data = preprocess_for_model(data, preprocess, implicit)
    return time_split(data, options.cutoff, end=options.end,
                      validation_fraction=options.validation_fraction)


# -- helpers --------------------------------------------------------------------------------------
def _weak_split(train: Interactions, test: Interactions, kind: str, params: dict,
                validation_fraction: float, seed: int) -> Split:
    """Carve validation from ``train`` and assemble; ``test`` shares ``train``'s vocabularies."""
    _check_seed(seed)
    held = carve_validation(train, validation_fraction, seed)
    rows, cols, _, _ = train.to_arrays()
    trained_users = np.bincount(rows, minlength=train.n_users) > 0
    trained_items = np.bincount(cols, minlength=train.n_items) > 0
    t_rows, t_cols, _, _ = test.to_arrays()
    params = {
        **params, "validation_fraction": float(validation_fraction), "seed": int(seed),
        "n_validation_ratings": int(held.sum()),
        "test_ratings_unseen_user": int((~trained_users[t_rows]).sum()),
        "test_ratings_unseen_item": int((~trained_items[t_cols]).sum()),
    }
    return _assemble(train, held, test, kind, params)


def _assemble(train: Interactions, held: np.ndarray, test: Interactions, kind: str,
              params: dict) -> Split:
    remainder = train.mask(~held)
    params = {**params, "n_train_ratings": int(remainder.nnz), "n_test_ratings": int(test.nnz),
              "n_users": int(train.n_users), "n_items": int(train.n_items)}
    return Split(
        train=remainder,
        validation=HeldOut(fold_in=remainder, targets=train.mask(held)),
        test=HeldOut(fold_in=train, targets=test),
        kind=kind,
        params=params,
    )


def _common_vocabulary(a: Interactions, b: Interactions) -> tuple[Interactions, Interactions]:
    """Both on the union of their users and of their items (ids sorted as the readers sort them)."""
    parts = []
    for part in (a, b):
        rows, cols, values, ts = part.to_arrays()
        parts.append((part.user_ids[rows], part.item_ids[cols], values, ts))
    users = _sorted_ids(np.concatenate([a.user_ids, b.user_ids]))
    items = _sorted_ids(np.concatenate([a.item_ids, b.item_ids]))
    out = []
    for users_raw, items_raw, values, ts in parts:
        out.append(Interactions.from_arrays(users_raw, items_raw, values, ts,
                                            user_ids=users, item_ids=items,
                                            item_titles=a.item_titles))
    return out[0], out[1]


def _sorted_ids(ids: np.ndarray) -> np.ndarray:
    uniq = np.unique(np.asarray(ids, dtype=str))
    try:
        return uniq[np.argsort(uniq.astype(np.int64), kind="stable")]
    except ValueError:
        return uniq


def _map_parts(split: Split, fn) -> Split:
    return Split(
        train=fn(split.train),
        validation=HeldOut(fn(split.validation.fold_in), fn(split.validation.targets)),
        test=HeldOut(fn(split.test.fold_in), fn(split.test.targets)),
        kind=split.kind, params=split.params,
    )


def _fold_name(fold: str | int) -> str:
    name = f"u{fold}" if isinstance(fold, int) or str(fold).isdigit() else str(fold)
    if name not in CANONICAL_FOLDS:
        raise ConfigError(f"unknown fold {fold!r}; valid: {', '.join(CANONICAL_FOLDS)}")
    return name


def _check_nonempty(data: Interactions) -> None:
    if not isinstance(data, Interactions):
        raise TypeError(f"data must be an aerec Interactions, got {type(data).__name__}")
    if data.nnz == 0:
        raise EmptyDataError("no ratings to split")


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value < 1:
        raise ConfigError(f"{name} must be a number in (0, 1), got {value!r}")


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be an integer in [0, 2**32), got {seed!r}")
