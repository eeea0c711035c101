"""The split kinds a run can name, in one explicit registry (``aerec train --split KIND``).

Each kind is a function ``make(data, test, spec, implicit) -> Split``: ``data`` (and ``test``, for
kinds that take a given test file) as read, ``spec`` the run's description (its ``data``,
``preprocess`` and ``split`` entries, plain values), ``implicit`` whether the model ranks
(binarised input) or predicts ratings. The kind applies the run's preprocessing itself, since where
it belongs depends on the protocol (the canonical folds are used as published).

* ``strong``: strong generalization with fold-in (Liang et al. 2018), :mod:`aerec.data.splits`;
* ``given``: a given train / test pair of files, validation carved from the training rows;
* ``u1`` ... ``u5``, ``ua``, ``ub``, ``random``, ``time``: rating prediction,
  :mod:`aerec.data.explicit_splits`.
"""

from __future__ import annotations

from typing import Any, Callable

from aerec.data import explicit_splits
from aerec.data.interactions import Interactions
from aerec.data.preprocess import preprocess_for_model
from aerec.data.splits import Split, given_split, strong_generalization
from aerec.errors import ConfigError

__all__ = ["SPLIT_KINDS", "SplitKind", "make_split"]

SplitKind = Callable[[Interactions, "Interactions | None", dict[str, Any], bool], Split]


def strong_kind(data: Interactions, test: Interactions | None, spec: dict[str, Any],
                implicit: bool) -> Split:
    """Strong generalization: held-out users for validation and for test."""
    split = spec["split"]
    data = preprocess_for_model(data, spec.get("preprocess", {}), implicit)
    return strong_generalization(data, split["n_heldout"], seed=split["seed"],
                                 test_prop=split.get("test_prop", 0.2))


def given_kind(data: Interactions, test: Interactions | None, spec: dict[str, Any],
               implicit: bool) -> Split:
    """A given train / test pair (the same users in both)."""
    if test is None:
        raise ConfigError("a given split needs a test file")
    options = spec.get("preprocess", {})
    data = preprocess_for_model(data, options, implicit)
    # The test rows are binarised as the training rows are, but never filtered by counts.
    test = preprocess_for_model(test, {"threshold": options.get("threshold")}, implicit)
    split = spec["split"]
    # LightGCN's protocol counts test items that train.txt lacks; other formats drop them.
    lightgcn = spec.get("data", {}).get("format") == "lightgcn"
    unseen = spec.get("data", {}).get("unseen_test_items", "keep" if lightgcn else "drop")
    return given_split(data, test, validation_fraction=split.get("validation_fraction", 0.1),
                       seed=split["seed"], unseen_test_items=unseen)


#: Every split kind, by name.
SPLIT_KINDS: dict[str, SplitKind] = {
    "strong": strong_kind,
    "given": given_kind,
    **{name: explicit_splits.fold_kind(name) for name in explicit_splits.CANONICAL_FOLDS},
    "random": explicit_splits.random_kind,
    "time": explicit_splits.time_kind,
}


def make_split(data: Interactions, test: Interactions | None, spec: dict[str, Any],
               implicit: bool) -> Split:
    """The split ``spec["split"]["kind"]`` of ``data`` (and ``test``)."""
    kind = spec["split"]["kind"]
    make = SPLIT_KINDS.get(kind)
    if make is None:
        raise ConfigError(f"unknown split {kind!r}; valid: {', '.join(SPLIT_KINDS)}")
    return make(data, test, spec, implicit)
