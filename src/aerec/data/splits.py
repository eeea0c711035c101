"""Train / validation / test splits: the strong generalization of Liang et al. (2018) and given splits.

:func:`strong_generalization` reproduces the preprocessing of the Mult-VAE reference notebook
(``VAE_ML20M_WWW2018.ipynb`` of github.com/dawenl/vae_cf) with the same random streams, so that a
seed gives the same users and the same fold-in / target items as the notebook. :func:`given_split`
turns a provided train / test pair (weak generalization: the same users in both) into the same
:class:`Split` shape.
"""

from __future__ import annotations

import warnings

from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
import pandas as pd

from aerec.data.interactions import Interactions
from aerec.errors import ConfigError, DataError, EmptyDataError

__all__ = ["HeldOut", "Split", "strong_generalization", "given_split"]

#: Held-out users with fewer interactions than this keep all of them as fold-in (reference code).
MIN_ITEMS_TO_SPLIT = 5


@dataclass(frozen=True, eq=False)
class HeldOut:
    """Users evaluated by fold-in: the items shown to the model and the items it should find.

    Parameters
    ----------
    fold_in : Interactions
        What the model sees of each user.
    targets : Interactions
        What it is scored on; same users in the same row order, same item vocabulary, and no
        (user, item) pair in common with ``fold_in``. A user may have no targets (then the
        evaluation skips it).
    """

    fold_in: Interactions
    targets: Interactions

    def __post_init__(self) -> None:
        if not np.array_equal(self.fold_in.user_ids, self.targets.user_ids):
            raise DataError("HeldOut fold_in and targets must hold the same users in the same order")
        if not np.array_equal(self.fold_in.item_ids, self.targets.item_ids):
            raise DataError("HeldOut fold_in and targets must share one item vocabulary")

    @property
    def n_users(self) -> int:
        return self.fold_in.n_users


@dataclass(frozen=True, eq=False)
class Split:
    """A training set plus validation and test users, all on the training item vocabulary.

    Parameters
    ----------
    train : Interactions
        What models are fitted on.
    validation, test : HeldOut
        Evaluated by fold-in (see :func:`aerec.evaluation.evaluate_ranking`).
    kind : str
        ``"strong_generalization"`` or ``"given"``.
    params : dict
        The arguments that rebuild the split and counts of what was dropped (JSON-serialisable).
    """

    train: Interactions
    validation: HeldOut
    test: HeldOut
    kind: str
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, held in (("validation", self.validation), ("test", self.test)):
            if not np.array_equal(held.fold_in.item_ids, self.train.item_ids):
                raise DataError(f"the {name} items must be the training items, in the same order")


# -- strong generalization --------------------------------------------------------------------
def strong_generalization(
    data: Interactions,
    n_heldout: int | float,
    *,
    seed: int = 98765,
    test_prop: float = 0.2,
    train_only: np.ndarray | None = None,
) -> Split:
    """Split users into disjoint train / validation / test groups, as Liang et al. (2018) do.

    The procedure and its random streams are those of the Mult-VAE reference notebook:

    1. Users with at least one interaction, in ascending raw id order (numeric when every id is
       an integer, as ``groupby`` sorts them), are permuted by
       ``np.random.RandomState(seed).permutation(n_users)`` (the notebook's
       ``np.random.seed(seed); np.random.permutation(n_users)``, without global state).
    2. The first ``n_users - 2N`` permuted users train, the next ``N`` validate, the last ``N``
       test.
    3. The items are those of the training users, ordered by first appearance when the training
       interactions are read user by user in ascending user id, each user's items in ascending
       item id (the order of ``pd.unique`` on the notebook's sorted ratings). Held-out users'
       interactions with other items are dropped.
    4. Each held-out group is split per user with a ``RandomState(seed)`` created afresh for the
       group: users in ascending id order; a user with ``n >= 5`` items, listed in ascending item
       id, gets ``rng.choice(n, size=int(test_prop * n), replace=False)`` of them as targets and
       the rest as fold-in; a user with fewer keeps all as fold-in and has no targets.

    Rows of ``train`` and of each held-out group are in permuted order (the notebook's user
    index). Deliberate deviation: a held-out user left with no interactions after step 3 stays as
    an empty row (the notebook loses it); it has no targets, so no metric changes.

    Parameters
    ----------
    data : Interactions
        All interactions (already filtered, e.g. ratings > 3.5 and users with >= 5 items).
    n_heldout : int or float
        Users per held-out group: a count, or a fraction of users in (0, 0.5), rounded.
    seed : int
        Seed of the permutation and of both per-user splits (98765 in the reference).
    test_prop : float
        Fraction of a held-out user's items that become targets, in (0, 1).
    train_only : numpy.ndarray, optional
        Rows of users who are never held out (your own data's users with too short a history to
        evaluate): they join the training users after the permutation, so the held-out groups
        are drawn from the other users exactly as without them. Counted in ``params``
        (``users_not_evaluated``).

    Returns
    -------
    Split
        ``kind="strong_generalization"``; ``params`` holds the arguments, the resolved
        ``n_heldout``, ``n_users``, ``n_items`` and the counts of dropped users and interactions.

    Raises
    ------
    ConfigError
        For invalid ``n_heldout``, ``seed`` or ``test_prop``.
    EmptyDataError
        If ``data`` has no interactions.
    """
    _check_interactions(data, "data")
    _check_seed(seed)
    if isinstance(test_prop, bool) or not isinstance(test_prop, Real) or not 0 < test_prop < 1:
        raise ConfigError(f"test_prop must be a number in (0, 1), got {test_prop!r}")
    active = np.diff(data.matrix.indptr) > 0
    light = np.zeros(data.n_users, bool)
    if train_only is not None and len(train_only):
        light[np.asarray(train_only, dtype=np.int64)] = True
    users = np.flatnonzero(active & ~light)
    users = users[_ascending_ids(data.user_ids[users])]
    n_users = len(users)
    n_held = _resolve_n_heldout(n_heldout, n_users)

    users = users[np.random.RandomState(seed).permutation(n_users)]
    train_users = np.concatenate([users[: n_users - 2 * n_held],
                                  np.flatnonzero(active & light)]).astype(users.dtype)
    groups = {
        "validation": users[n_users - 2 * n_held : n_users - n_held],
        "test": users[n_users - n_held :],
    }

    item_rank = _rank(data.item_ids)
    items = _items_in_reading_order(data, train_users, item_rank)
    train = data.select_users(train_users).select_items(items)
    is_train_item = np.zeros(data.n_items, bool)
    is_train_item[items] = True

    params: dict = {
        "n_heldout": n_held, "seed": seed, "test_prop": float(test_prop),
        "n_users": n_users, "n_items": len(items),
        "empty_users_dropped": int(data.n_users - active.sum()),
    }
    if train_only is not None:
        params["users_not_evaluated"] = int((active & light).sum())
    held: dict[str, HeldOut] = {}
    for name, group in groups.items():
        sub = data.select_users(group)
        kept = is_train_item[sub.matrix.indices]
        params[f"{name}_interactions_dropped"] = int(len(kept) - kept.sum())
        sub = sub.mask(kept)
        is_target = _proportion_targets(sub, item_rank, seed, test_prop)
        held[name] = HeldOut(
            fold_in=sub.mask(~is_target).select_items(items),
            targets=sub.mask(is_target).select_items(items),
        )
    return Split(train, held["validation"], held["test"], "strong_generalization", params)


def _items_in_reading_order(data: Interactions, users: np.ndarray, item_rank: np.ndarray) -> np.ndarray:
    """Columns seen by ``users``, by first appearance in (ascending user id, ascending item id)."""
    users = users[_ascending_ids(data.user_ids[users])]
    m = data.matrix[users]
    entry_row = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(m.indptr))
    cols = m.indices[np.lexsort((item_rank[m.indices], entry_row))]
    _, first = np.unique(cols, return_index=True)
    return cols[np.sort(first)].astype(np.int64)


def _proportion_targets(
    sub: Interactions, item_rank: np.ndarray, seed: int, test_prop: float
) -> np.ndarray:
    """Boolean mask (CSR order of ``sub``) of the entries drawn as targets, as the reference
    ``split_train_test_proportion`` draws them."""
    rng = np.random.RandomState(seed)
    indptr, indices = sub.matrix.indptr, sub.matrix.indices
    is_target = np.zeros(sub.nnz, bool)
    # One draw per user in a fixed order is what makes the stream match the reference, so this
    # loop cannot be vectorised; it costs one rng.choice per held-out user.
    for row in _ascending_ids(sub.user_ids):
        start, stop = indptr[row], indptr[row + 1]
        n = stop - start
        if n < MIN_ITEMS_TO_SPLIT:
            continue
        entries = start + np.argsort(item_rank[indices[start:stop]], kind="stable")
        chosen = rng.choice(n, size=int(test_prop * n), replace=False)
        is_target[entries[chosen]] = True
    return is_target


def _resolve_n_heldout(n_heldout: int | float, n_users: int) -> int:
    if isinstance(n_heldout, bool) or not isinstance(n_heldout, Real):
        raise ConfigError(f"n_heldout must be an int (users) or a float fraction, got {n_heldout!r}")
    if isinstance(n_heldout, Integral):
        n_held = int(n_heldout)
    elif 0 < n_heldout < 0.5:
        n_held = int(round(n_heldout * n_users))
    else:
        raise ConfigError(f"n_heldout as a fraction must be in (0, 0.5), got {n_heldout!r}")
    if n_held < 1 or n_users - 2 * n_held < 1:
        raise ConfigError(
            f"n_heldout={n_heldout!r} gives {n_held} users per held-out group, but with {n_users} "
            "users it must leave at least one user per group and one for training; "
            f"use 1 <= n_heldout <= {(n_users - 1) // 2}"
        )
    return n_held


# -- given train / test ------------------------------------------------------------------------
def given_split(
    train: Interactions,
    test: Interactions,
    *,
    validation_fraction: float = 0.1,
    seed: int = 98765,
    unseen_test_items: str = "drop",
) -> Split:
    """Weak generalization on a provided train / test pair (the same users in both).

    * Test interactions of users absent from ``train`` are dropped, and so, by default, are
      those of items absent from ``train`` (counted in ``params``); the test targets are put on
      the training users and items. With ``unseen_test_items="keep"`` (LightGCN's protocol:
      its item count covers both files) those items are added to the vocabulary as items
      without training interactions, so that they stay in the targets and in Recall's
      denominator although no model can have learned them.
    * Validation is carved out of ``train``: each user with at least two training interactions
      has ``max(1, int(validation_fraction * n))`` of its ``n`` interactions, drawn at random with
      ``np.random.RandomState(seed)``, held out as validation targets.
    * ``Split.train`` is the remainder, which models are fitted on.
      ``validation = HeldOut(fold_in=remainder, targets=held-out interactions)``;
      ``test = HeldOut(fold_in=the full training rows, targets=test rows)``. All three have one
      row per training user in the order of ``train``; users without test interactions have no
      test targets and are skipped by the evaluation.

    Parameters
    ----------
    train, test : Interactions
        The provided files, read with their own vocabularies.
    validation_fraction : float
        Share of each user's training interactions held out for validation, in (0, 1).
    seed : int
        Seed of the validation draw.
    unseen_test_items : {"drop", "keep"}
        What becomes of test interactions on items that ``train`` lacks.

    Returns
    -------
    Split
        ``kind="given"``; ``params`` holds the arguments, the number of validation targets and
        the counts ``test_users_dropped``, ``test_interactions_dropped_user``,
        ``test_interactions_dropped_item``, ``test_interactions_in_train`` (pairs present in
        both files, which can never be ranked because fold-in items are excluded) and
        ``test_interactions_untrained_item`` (targets on items of the vocabulary that no training
        interaction holds, as LightGCN counts them: in Recall's denominator, though no model
        learned anything about them; said in a :class:`UntrainedTargetsWarning`).
    """
    _check_interactions(train, "train")
    if not isinstance(test, Interactions):
        raise TypeError(f"test must be an aerec Interactions, got {type(test).__name__}")
    _check_seed(seed)
    if (
        isinstance(validation_fraction, bool)
        or not isinstance(validation_fraction, Real)
        or not 0 < validation_fraction < 1
    ):
        raise ConfigError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")

    if unseen_test_items not in UNSEEN_TEST_ITEMS:
        raise ConfigError(f"unseen_test_items must be one of {', '.join(UNSEEN_TEST_ITEMS)}, "
                          f"got {unseen_test_items!r}")
    if unseen_test_items == "keep":
        train = _with_items_of(train, test)
    test_targets, dropped = _onto_vocabulary(test, train)
    held = _random_holdout(train.matrix, validation_fraction, seed)
    remainder = train.mask(~held)
    params = {
        "validation_fraction": float(validation_fraction), "seed": seed,
        "n_validation_targets": int(held.sum()), **dropped,
        "test_interactions_in_train": int(train.binary().multiply(test_targets.binary()).nnz),
        "test_interactions_untrained_item": _on_untrained_items(test_targets, train),
    }
    return Split(
        train=remainder,
        validation=HeldOut(fold_in=remainder, targets=train.mask(held)),
        test=HeldOut(fold_in=train, targets=test_targets),
        kind="given",
        params=params,
    )


#: What :func:`given_split` can do with test items absent from the training file.
UNSEEN_TEST_ITEMS = ("drop", "keep")


def _with_items_of(train: Interactions, test: Interactions) -> Interactions:
    """``train`` with the items of ``test`` it lacks added (after its own) as empty columns."""
    test_items = np.asarray(test.item_ids)[np.diff(test.matrix.tocsc().indptr) > 0]
    new = np.setdiff1d(test_items.astype(str), np.asarray(train.item_ids, str))
    if len(new) == 0:
        return train
    rows, cols, values, timestamps = train.to_arrays()
    return Interactions.from_indices(
        rows, cols, values, timestamps, user_ids=train.user_ids,
        item_ids=np.concatenate([np.asarray(train.item_ids, str), new]),
        explicit=train.explicit, item_titles=train.item_titles)


class UntrainedTargetsWarning(UserWarning):
    """Test targets are on items that no training interaction holds."""


def _on_untrained_items(targets: Interactions, train: Interactions) -> int:
    """Targets on items without training interactions, said in a warning when there are any."""
    untrained = np.diff(train.matrix.tocsc().indptr) == 0
    count = int(targets.matrix[:, np.flatnonzero(untrained)].nnz) if untrained.any() else 0
    if count:
        warnings.warn(
            f"{count} test interactions are on {int(untrained.sum())} items without training "
            "interactions: they count in Recall's denominator (LightGCN's protocol) though no "
            "model learned anything about them (--unseen-test-items drop drops them)", UntrainedTargetsWarning, stacklevel=3)
    return count


def _onto_vocabulary(test: Interactions, train: Interactions) -> tuple[Interactions, dict]:
    """``test`` re-indexed on the users and items of ``train``, and the counts of what was lost."""
    user_of = pd.Index(train.user_ids).get_indexer(test.user_ids)
    item_of = pd.Index(train.item_ids).get_indexer(test.item_ids)
    rows, cols, values, timestamps = test.to_arrays()
    rows, cols = user_of[rows], item_of[cols]
    known_user = rows >= 0
    keep = known_user & (cols >= 0)
    test_users = np.flatnonzero(np.diff(test.matrix.indptr) > 0)
    dropped = {
        "test_users_dropped": int((user_of[test_users] < 0).sum()),
        "test_interactions_dropped_user": int((~known_user).sum()),
        "test_interactions_dropped_item": int((known_user & ~keep).sum()),
    }
    targets = Interactions.from_indices(
        rows[keep], cols[keep], values[keep], None if timestamps is None else timestamps[keep],
        user_ids=train.user_ids, item_ids=train.item_ids, explicit=test.explicit,
        item_titles=train.item_titles,
    )
    return targets, dropped


def _random_holdout(matrix, fraction: float, seed: int) -> np.ndarray:
    """Mask (CSR order) of ``max(1, int(fraction * n))`` random entries of each row with n >= 2."""
    n = np.diff(matrix.indptr)
    n_held = np.where(n >= 2, np.maximum(1, (fraction * n).astype(np.int64)), 0)
    return lowest_keys_per_row(matrix.indptr, np.random.RandomState(seed).random_sample(matrix.nnz),
                               n_held)


def lowest_keys_per_row(indptr: np.ndarray, keys: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mask (CSR order) of the ``counts[r]`` entries of each row ``r`` with the smallest ``keys``.

    With uniform random keys this draws ``counts[r]`` entries of each row without replacement: one
    vectorised draw instead of a ``choice`` per user.
    """
    n = np.diff(indptr)
    row = np.repeat(np.arange(len(n), dtype=np.int64), n)
    order = np.lexsort((keys, row))
    rank_in_row = np.empty(len(keys), np.int64)
    rank_in_row[order] = np.arange(len(keys)) - indptr[row]
    return rank_in_row < counts[row]


# -- helpers ----------------------------------------------------------------------------------
def _check_interactions(data: object, name: str) -> None:
    if not isinstance(data, Interactions):
        raise TypeError(f"{name} must be an aerec Interactions, got {type(data).__name__}")
    if data.nnz == 0:
        raise EmptyDataError(f"{name} has no interactions to split")


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be an integer in [0, 2**32), got {seed!r}")


def _ascending_ids(ids: np.ndarray) -> np.ndarray:
    """Permutation that sorts raw ids: numerically when all are integers, else as strings."""
    ids = np.asarray(ids)
    try:
        return np.argsort(ids.astype(np.int64), kind="stable")
    except (ValueError, OverflowError):
        return np.argsort(ids.astype(str), kind="stable")


def _rank(ids: np.ndarray) -> np.ndarray:
    """Position of each id in ascending raw id order."""
    rank = np.empty(len(ids), np.int64)
    rank[_ascending_ids(ids)] = np.arange(len(ids))
    return rank
