"""The split kinds a run can name, in one explicit registry (``aerec train --split KIND``).

Each kind is a function ``make(data, test, source, preprocess, options, implicit) -> Split``:
``data`` (and ``test``, for kinds that take a given test file) as read, then the typed pieces of
the run that a split reads (:mod:`aerec.data.options`: where the data came from, its
preprocessing, the split's options), and ``implicit``, whether the model ranks (binarised input)
or predicts ratings. The kind applies the run's preprocessing itself, since where
it belongs depends on the protocol (the canonical folds are used as published).

* ``strong``: strong generalization with fold-in (Liang et al. 2018), :mod:`aerec.data.splits`;
* ``given``: a given train / test pair of files, validation carved from the training rows;
* ``u1`` ... ``u5``, ``ua``, ``ub``, ``random``, ``time``: rating prediction,
  :mod:`aerec.data.explicit_splits`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from aerec.data import explicit_splits
from aerec.data.interactions import Interactions
from aerec.data.options import DataSource, Preprocessing, SplitOptions
from aerec.data.preprocess import preprocess_for_model, split_light_users
from aerec.data.splits import Split, given_split, strong_generalization
from aerec.errors import ConfigError

__all__ = ["SPLIT_KINDS", "SplitKind", "make_split"]

SplitKind = Callable[[Interactions, "Interactions | None", DataSource, Preprocessing,
                      SplitOptions, bool], Split]


def strong_kind(data: Interactions, test: Interactions | None, source: DataSource,
                preprocess: Preprocessing, options: SplitOptions, implicit: bool) -> Split:
    """Strong generalization: held-out users for validation and for test.

    With ``preprocess.keep_users`` (your own data) users below ``min_user`` are not dropped: they
    are trained on (so they get recommendations by id) and only never held out for evaluation.
    """
    if test is not None:
        raise ConfigError("the strong generalization split holds out users of one file: give "
                          "no test file (or use the given split)")
    light = None
    read = data
    if preprocess.keep_users and preprocess.min_user:
        data = preprocess_for_model(data, replace(preprocess, min_user=0), implicit)
        data, light = split_light_users(data, preprocess.min_user)
    else:
        data = preprocess_for_model(data, preprocess, implicit)
    split = strong_generalization(data, options.n_heldout, seed=options.seed,
                                  test_prop=options.test_prop, train_only=light)
    return _count_filtered(split, read, data)


def given_kind(data: Interactions, test: Interactions | None, source: DataSource,
               preprocess: Preprocessing, options: SplitOptions, implicit: bool) -> Split:
    """A given train / test pair (the same users in both)."""
    if test is None:
        raise ConfigError("a given split needs a test file")
    read = data
    data = preprocess_for_model(data, preprocess, implicit)
    # The test rows are binarised as the training rows are, but never filtered by counts.
    test = preprocess_for_model(test, Preprocessing(threshold=preprocess.threshold), implicit)
    # LightGCN's protocol counts test items that train.txt lacks; other formats drop them.
    unseen = options.unseen_test_items or ("keep" if source.format == "lightgcn" else "drop")
    split = given_split(data, test, validation_fraction=options.validation_fraction,
                        seed=options.seed, unseen_test_items=unseen)
    return _count_filtered(split, read, data)


def _count_filtered(split: Split, read: Interactions, kept: Interactions) -> Split:
    """``split`` with the users and items that the preprocessing removed counted in its params
    (``users_dropped``, ``items_dropped``), so that no filter removes anyone silently."""
    def active(matrix, axis: int) -> int:
        return int((matrix.getnnz(axis=axis) > 0).sum())

    split.params.update({
        "users_dropped": active(read.matrix, 1) - active(kept.matrix, 1),
        "items_dropped": active(read.matrix, 0) - active(kept.matrix, 0),
    })
    return split


#: Every split kind, by name.
SPLIT_KINDS: dict[str, SplitKind] = {
    "strong": strong_kind,
    "given": given_kind,
    **{name: explicit_splits.fold_kind(name) for name in explicit_splits.CANONICAL_FOLDS},
    "random": explicit_splits.random_kind,
    "time": explicit_splits.time_kind,
}


def make_split(data: Interactions, test: Interactions | None, source: DataSource,
               preprocess: Preprocessing, options: SplitOptions, implicit: bool) -> Split:
    """The split ``options.kind`` of ``data`` (and ``test``)."""
    make = SPLIT_KINDS.get(options.kind)
    if make is None:
        raise ConfigError(f"unknown split {options.kind!r}; valid: {', '.join(SPLIT_KINDS)}")
    return make(data, test, source, preprocess, options, implicit)
