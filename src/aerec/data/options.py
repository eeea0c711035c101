"""The typed pieces of a run that the data layer reads: where the data is, how it is preprocessed
and how it is split.

They are parts of :class:`aerec.run_spec.RunSpec` (which owns the defaults that depend on the
model and the data set) and are handed to the split kinds of :mod:`aerec.data.split_kinds` one by
one, so that no data function reads a run's whole description by string keys. Each piece checks
its own values when it is made, and converts to and from the plain dicts of ``run.json``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from aerec.errors import ConfigError

__all__ = ["DataSource", "Preprocessing", "SplitOptions", "from_dict", "to_dict",
           "DEFAULT_HELDOUT_FRACTION", "DEFAULT_VALIDATION_FRACTION", "DEFAULT_SPLIT_SEED"]

#: Held-out users of the strong-generalization split when none is given (validation and test each).
DEFAULT_HELDOUT_FRACTION = 0.1
#: Share of the training interactions carved out for validation (given and rating splits).
DEFAULT_VALIDATION_FRACTION = 0.1
#: The split seed of every published aerec figure.
DEFAULT_SPLIT_SEED = 98765
#: Strong generalization: share of each held-out user's interactions to predict (the paper's).
DEFAULT_TEST_PROP = 0.2
#: The random rating split's test share.
DEFAULT_TEST_FRACTION = 0.1
_COLUMN_ROLES = ("user_col", "item_col", "rating_col", "timestamp_col", "quantity_col")
_DUPLICATES = ("last", "sum", "max", "error")


@dataclass(frozen=True)
class DataSource:
    """Where a run's interactions come from: a data set by name, or files.

    Parameters
    ----------
    dataset : str, optional
        A data set name (``ml-100k``, ``ml-20m``, ...), looked up in ``data_dir``.
    data_dir : str, optional
        Folder holding data sets by name (else ``AEREC_DATA_DIR``, then the cache).
    train, test : str, optional
        A file of interactions (your own data, or the training file of a given split) and the
        test file of a given split; absolute paths.
    format : str
        The files' format (``auto``, ``ml-100k``, ``csv``, ``parquet``, ``lightgcn``, ...).
    columns : mapping
        Column names by role (``user_col``, ``item_col``, ``rating_col``, ``timestamp_col``,
        ``quantity_col``), for files with columns.
    duplicates : str, optional
        What a repeated (user, item) pair becomes: ``last``, ``sum``, ``max`` or ``error``;
        None for the reader's default.
    item_table : str, optional
        A file of item attributes (id, name, ...) whose names show in recommendations.
    """

    dataset: str | None = None
    data_dir: str | None = None
    train: str | None = None
    test: str | None = None
    format: str = "auto"
    columns: Mapping[str, str] = field(default_factory=dict)
    duplicates: str | None = None
    item_table: str | None = None

    def __post_init__(self) -> None:
        if (self.dataset is None) == (self.train is None):
            raise ConfigError("a data source is either a data set by name or a training file")
        if self.test is not None and self.train is None:
            raise ConfigError("a test file needs its training file")
        unknown = sorted(set(self.columns) - set(_COLUMN_ROLES))
        if unknown:
            raise ConfigError(f"unknown column role(s) {', '.join(unknown)}; valid: "
                              f"{', '.join(_COLUMN_ROLES)}")
        if self.duplicates is not None and self.duplicates not in _DUPLICATES:
            raise ConfigError(f"duplicates must be one of {', '.join(_DUPLICATES)}, got "
                              f"{self.duplicates!r}")
        object.__setattr__(self, "columns", dict(self.columns))

    @property
    def is_dataset(self) -> bool:
        """Whether the source is a public data set by name (with its paper's protocol)."""
        return self.dataset is not None


@dataclass(frozen=True)
class Preprocessing:
    """What is done to the interactions before the split.

    Parameters
    ----------
    threshold : float, optional
        Models of implicit feedback keep ratings strictly above it as positives (None: keep every
        interaction, as for rating models and implicit data).
    min_user, min_item : int
        Users and items with fewer interactions are filtered out (0: none). On your own data
        (``keep_users``) users below ``min_user`` stay in the training rows and are only kept out
        of evaluation.
    keep_users : bool
        Keep every user for training and recommendations, and apply ``min_user`` to the choice
        of evaluated users only (the default for your own files; the papers' data sets drop them
        as the papers do).
    """

    threshold: float | None = 3.5
    min_user: int = 0
    min_item: int = 0
    keep_users: bool = False

    def __post_init__(self) -> None:
        if self.threshold is not None and not _finite_number(self.threshold):
            raise ConfigError(f"the rating threshold (--min-rating) must be a finite number, got "
                              f"{self.threshold!r}")
        for name in ("min_user", "min_item"):
            value = getattr(self, name)
            if not _whole(value) or value < 0 or value > 2**31:
                flag = "--min-user" if name == "min_user" else "--min-item"
                raise ConfigError(f"{name} ({flag}) must be a whole number >= 0, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.threshold is not None:
            object.__setattr__(self, "threshold", float(self.threshold))


@dataclass(frozen=True)
class SplitOptions:
    """How a run splits its data (see :mod:`aerec.data.split_kinds` for the kinds).

    Parameters
    ----------
    kind : str
        ``strong``, ``given``, or a rating split (``u1`` ... ``u5``, ``ua``, ``ub``, ``random``,
        ``time``).
    seed : int
        The split's seed.
    n_heldout : int or float, optional
        ``strong``: held-out users for validation and for test each, a count or a fraction.
    test_prop : float, optional
        ``strong``: share of each held-out user's interactions that are predicted.
    validation_fraction : float, optional
        Other kinds: share of the training interactions held out for validation.
    test_fraction : float, optional
        ``random``: share of the ratings held out for test.
    cutoff, end : str, optional
        ``time``: train before ``cutoff``, test from it on (until ``end``).
    unseen_test_items : {"keep", "drop"}, optional
        ``given``: what test interactions with items absent from the training file become:
        kept, counting in Recall's denominator though no model can rank them (LightGCN's
        protocol, the default of its format), or dropped (counted; the default elsewhere).
    """

    kind: str = "strong"
    seed: int = DEFAULT_SPLIT_SEED
    n_heldout: int | float | None = None
    test_prop: float | None = None
    validation_fraction: float | None = None
    test_fraction: float | None = None
    cutoff: str | None = None
    end: str | None = None
    unseen_test_items: str | None = None

    def __post_init__(self) -> None:
        if not _whole(self.seed) or not 0 <= self.seed <= 2**32 - 1:
            raise ConfigError(f"the split seed (--seed) must be a whole number in [0, "
                              f"{2**32 - 1}], got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        strong = self.kind == "strong"
        if strong and self.n_heldout is None:
            object.__setattr__(self, "n_heldout", DEFAULT_HELDOUT_FRACTION)
        if strong and self.test_prop is None:
            object.__setattr__(self, "test_prop", DEFAULT_TEST_PROP)
        if not strong and self.validation_fraction is None:
            object.__setattr__(self, "validation_fraction", DEFAULT_VALIDATION_FRACTION)
        if self.kind == "random" and self.test_fraction is None:
            object.__setattr__(self, "test_fraction", DEFAULT_TEST_FRACTION)
        self._check_relevance()
        if self.n_heldout is not None:
            object.__setattr__(self, "n_heldout", _heldout(self.n_heldout))
        for name in ("test_prop", "validation_fraction", "test_fraction"):
            value = getattr(self, name)
            if value is not None and (not _finite_number(value) or not 0 < value < 1):
                raise ConfigError(f"--{name.replace('_', '-')} must be a fraction in (0, 1), got "
                                  f"{value!r}")
        if self.kind == "time" and self.cutoff is None:
            raise ConfigError("the time split needs --cutoff DATE (for example 2005-12-01)")

    def _check_relevance(self) -> None:
        """Options another kind would use are refused: a silently ignored option misleads."""
        used = {"strong": {"n_heldout", "test_prop"}, "random": {"validation_fraction",
                "test_fraction"}, "time": {"validation_fraction", "cutoff", "end"},
                "given": {"validation_fraction", "unseen_test_items"}}
        allowed = used.get(self.kind, {"validation_fraction"})
        for name in ("n_heldout", "test_prop", "validation_fraction", "test_fraction", "cutoff",
                     "end"):
            if getattr(self, name) is not None and name not in allowed:
                raise ConfigError(f"--{name.replace('_', '-')} does not apply to the "
                                  f"{self.kind} split")
        if self.unseen_test_items is not None:
            if self.kind != "given":
                raise ConfigError("--unseen-test-items applies to given splits only")
            if self.unseen_test_items not in ("keep", "drop"):
                raise ConfigError(f"--unseen-test-items must be keep or drop, got "
                                  f"{self.unseen_test_items!r}")


def to_dict(piece: Any, *, unset: bool = False) -> dict[str, Any]:
    """The plain dict of one piece, as ``run.json`` stores it; optional values that are unset
    (None) are left out unless ``unset``."""
    out = {}
    for f in dataclasses.fields(piece):
        value = getattr(piece, f.name)
        if value is None and f.default is None and not unset:
            continue
        out[f.name] = dict(value) if isinstance(value, Mapping) else value
    return out


def from_dict(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """``cls`` from a ``run.json`` entry; an unknown key is an error naming ``where``."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected an object, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; valid: "
                          f"{', '.join(sorted(names))}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any) -> bool:
    return _finite_number(value) and float(value).is_integer()


def _heldout(value: Any) -> int | float:
    """A held-out count (a whole number >= 1, ``1.0`` included) or a fraction in (0, 1)."""
    if isinstance(value, str):
        try:
            value = int(value) if value.strip().lstrip("+").isdigit() else float(value)
        except ValueError:
            raise ConfigError(f"--heldout must be a count or a fraction, got {value!r}") from None
    if not _finite_number(value) or value <= 0 or value > 2**31:
        raise ConfigError(f"--heldout must be a count (1 or more) or a fraction in (0, 1), "
                          f"got {value!r}")
    if value >= 1 and not float(value).is_integer():
        raise ConfigError(f"--heldout: a count must be a whole number, got {value!r}")
    if value == 1 and isinstance(value, float):
        # 1.0 reads as a fraction (every user) to some and as one user to others: say which.
        raise ConfigError("--heldout 1.0 is ambiguous: give 1 for one user, or a fraction below 1")
    return int(value) if value >= 1 else float(value)
