"""A run, typed: :class:`RunSpec` is the one description of a run that Python and the CLI share.

A run is the data and its source, the preprocessing, the split, the model and its hyperparameters,
and the training options (early stopping, the refit of given splits). Its defaults live here and
nowhere else: :meth:`RunSpec.create` fills in what the caller leaves out (the paper's protocol for
the papers' data sets, the reference notebook's elsewhere), checks everything before anything is
written, and gives a frozen value. ``aerec train`` only turns its arguments into
:meth:`RunSpec.create`'s; Python calls it directly and runs it with :func:`aerec.run`, which writes
the same run directory. ``run.json`` stores the spec with every hyperparameter typed (defaults
included) plus what resolved at run time (``resolved``: anneal steps, device, precision, the users
and items kept), so :meth:`RunSpec.load` gives back exactly the spec that was run.

As nanoGPT keeps its whole configuration beside its checkpoint, and LensKit types its training
options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from aerec.data.options import (DataSource, Preprocessing, SplitOptions, from_dict, to_dict)
from aerec.errors import ConfigError

__all__ = ["RunSpec", "TrainingOptions", "DataSource", "Preprocessing", "SplitOptions",
           "GIVEN_PATIENCE", "DEFAULT_MIN_RATING", "DEFAULT_MIN_USER"]

#: Early stopping's patience on given splits, where no paper fixes the number of epochs.
GIVEN_PATIENCE = 20
#: Models of implicit feedback keep ratings above this (the Mult-VAE paper's 3.5: 4 and 5 stars).
DEFAULT_MIN_RATING = 3.5
#: Users with fewer interactions are not evaluated (the reference notebook's 5).
DEFAULT_MIN_USER = 5


@dataclass(frozen=True)
class TrainingOptions:
    """How a run trains, beyond the model's hyperparameters.

    Parameters
    ----------
    patience : int, optional
        Early stopping: end after this many epochs without a better validation figure, keeping
        the best epoch (None trains every epoch, as the papers do).
    refit : bool
        Given splits: after the epoch is chosen on the validation carve, train again on the whole
        training rows with the same schedule and seed, stopping at that epoch.
    choose : bool
        Choose the hyperparameters that the papers tuned per data set (EASE / EDLAE ``lam`` and
        ``dropout``, Mult-VAE's beta cap, RecVAE's ``gamma``) on the validation users before
        training (:mod:`aerec.selection`); recorded in ``run.json``'s ``choice``.
    """

    patience: int | None = None
    refit: bool = False
    choose: bool = False

    def __post_init__(self) -> None:
        p = self.patience
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float))
                              or not math.isfinite(p) or not float(p).is_integer() or p < 1):
            raise ConfigError(f"patience must be a positive whole number of epochs, got {p!r}")
        if p is not None:
            object.__setattr__(self, "patience", int(p))
        if not isinstance(self.refit, bool):
            raise ConfigError(f"refit must be true or false, got {self.refit!r}")
        if not isinstance(self.choose, bool):
            raise ConfigError(f"choose must be true or false, got {self.choose!r}")


@dataclass(frozen=True)
class RunSpec:
    """One run: data, preprocessing, split, model, hyperparameters and training options.

    Build it with :meth:`create` (which applies the defaults and checks every value) or read it
    back with :meth:`load`; run it with :func:`aerec.run`.

    Attributes
    ----------
    model : str
        The registry name of the model (``mult-vae``, ``ease``, ...).
    params : mapping
        Every hyperparameter of the model, typed, defaults included.
    data : DataSource
    preprocess : Preprocessing
    split : SplitOptions
    training : TrainingOptions
    resolved : mapping
        What resolved when the run was prepared (anneal steps, device, precision, users and items
        kept); empty until then. Not part of the spec's identity.
    """

    model: str
    data: DataSource
    params: Mapping[str, Any] = field(default_factory=dict)
    preprocess: Preprocessing = field(default_factory=Preprocessing)
    split: SplitOptions = field(default_factory=SplitOptions)
    training: TrainingOptions = field(default_factory=TrainingOptions)
    resolved: Mapping[str, Any] = field(default_factory=dict, compare=False)
    #: Mult-VAE's beta search, when the run had one (its choice; see aerec.beta_search).
    beta_search: Mapping[str, Any] | None = field(default=None, compare=False)
    #: The hyperparameters chosen on validation (``training.choose``): every value tried and its
    #: figure. Once recorded, ``params`` hold the chosen values and a re-run does not choose again.
    choice: Mapping[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        from aerec.config import config_to_dict, make_config
        from aerec.models import get_model_class

        model_cls = get_model_class(self.model)
        config = make_config(model_cls.Config, dict(self.params), owner=model_cls.name)
        object.__setattr__(self, "params", config_to_dict(config))
        object.__setattr__(self, "resolved", dict(self.resolved))
        if self.training.refit and self.split.kind != "given":
            raise ConfigError("refit is for given splits (--train/--test): other splits choose "
                              "their model on other users or keep the paper's protocol")
        if self.training.refit and not model_cls.refittable:
            raise ConfigError(f"refit is not available for {self.model}: use refit=false")
        if self.training.choose and not _has_choice(self.model):
            raise ConfigError(f"choose: nothing is chosen on validation for {self.model}")
        if self.split.kind not in _split_kinds():
            raise ConfigError(f"unknown split {self.split.kind!r}; valid: "
                              f"{', '.join(_split_kinds())}")

    # -- making one -------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        model: str,
        data: str | Path | None = None,
        *,
        train: str | Path | None = None,
        test: str | Path | None = None,
        format: str = "auto",
        columns: Mapping[str, str] | None = None,
        duplicates: str | None = None,
        item_table: str | Path | None = None,
        data_dir: str | Path | None = None,
        params: Mapping[str, Any] | None = None,
        split: str | None = None,
        seed: int | None = None,
        heldout: int | float | str | None = None,
        validation_fraction: float | None = None,
        test_fraction: float | None = None,
        cutoff: str | None = None,
        unseen_test_items: str | None = None,
        min_rating: float | None = None,
        min_user: int | None = None,
        min_item: int | None = None,
        patience: int | None = None,
        refit: bool | None = None,
        choose: bool | None = None,
    ) -> RunSpec:
        """A run with the defaults filled in.

        Parameters
        ----------
        model : str
            The registry name of the model.
        data : str or Path, optional
            A data set name (``ml-100k``, ``ml-20m``, ...) or a file of your interactions
            (strong generalization). Give either ``data`` or ``train`` (and ``test``).
        train, test : str or Path, optional
            A given split's training and test files.
        format, columns, duplicates, item_table
            How the files are read (see :class:`~aerec.data.options.DataSource`).
        data_dir : str or Path, optional
            Folder holding data sets by name.
        params : mapping, optional
            Hyperparameters (strings are converted as from ``--set``); the rest take the model's
            defaults.
        split : str, optional
            The split kind: ``strong`` for ``data``, ``given`` for ``train``/``test`` by default.
        seed : int, optional
            The split's seed (98765).
        heldout : int, float or str, optional
            Strong generalization: held-out users per group (the paper's count for its data
            sets, else 10 %).
        validation_fraction, test_fraction, cutoff, unseen_test_items
            Options of the other split kinds (see :class:`~aerec.data.options.SplitOptions`).
        min_rating : float, optional
            Models of implicit feedback keep ratings above it (3.5, or the paper's).
        min_user, min_item : int, optional
            Minimum counts (the paper's for its data sets; 5 and 0 for ranking elsewhere, 0 for
            rating models and on given splits, where every test user is evaluated as LightGCN's
            protocol does). On your own data light users are trained on and recommended for,
            and only kept out of evaluation.
        patience : int, optional
            Early stopping (20 on given splits, else none).
        refit : bool, optional
            Refit on the whole training rows (the default on given splits).
        choose : bool, optional
            Choose the per-data-set hyperparameters on validation (:mod:`aerec.selection`): by
            default on your own data and on given splits, for the models that have a choice,
            unless ``params`` sets one of them; never by default for the papers' data sets,
            which keep the papers' values.

        Returns
        -------
        RunSpec
        """
        from aerec.data.datasets import DATASETS, PAPER_PROTOCOLS
        from aerec.data.readers import resolve_data_argument
        from aerec.models import get_model_class

        model_cls = get_model_class(model)
        params = dict(params or {})
        if (data is None) == (train is None):
            raise ConfigError("give either data (a data set name or a file) or train "
                              "(and test) files")
        if data is not None:
            source, value = resolve_data_argument(str(data), DATASETS)
        else:
            source, value = "file", None
        protocol = PAPER_PROTOCOLS.get(value) if source == "dataset" else None
        item_table = str(Path(item_table).resolve()) if item_table is not None else None
        if source == "dataset":
            src = DataSource(dataset=value, data_dir=str(data_dir) if data_dir else None,
                             duplicates=duplicates, item_table=item_table)
            kind = split or "strong"
        else:
            train_file = Path(value) if value is not None else Path(train)
            src = DataSource(train=str(train_file.resolve()),
                             test=str(Path(test).resolve()) if test is not None else None,
                             format=format, columns=dict(columns or {}), duplicates=duplicates,
                             item_table=item_table)
            kind = split or ("strong" if data is not None else "given")
        given = kind == "given"
        own_file = source == "file" and kind == "strong"
        threshold = DEFAULT_MIN_RATING if min_rating is None else min_rating
        if protocol is not None and min_rating is None:
            threshold = protocol.threshold
        if protocol is not None:
            user_default, item_default = protocol.min_user, protocol.min_item
        else:
            user_default = DEFAULT_MIN_USER if model_cls.implicit and not given else 0
            item_default = 0
        preprocess = Preprocessing(
            threshold=threshold if model_cls.implicit else None,
            min_user=user_default if min_user is None else min_user,
            min_item=item_default if min_item is None else min_item,
            keep_users=own_file)
        if kind == "strong" and heldout is None and protocol is not None:
            heldout = protocol.n_heldout
        split_options = SplitOptions(
            kind=kind, seed=98765 if seed is None else seed, n_heldout=heldout,
            test_prop=protocol.test_prop if protocol is not None and kind == "strong" else None,
            validation_fraction=validation_fraction, test_fraction=test_fraction,
            cutoff=cutoff, unseen_test_items=unseen_test_items)
        if kind in _canonical_folds() and src.dataset != "ml-100k":
            raise ConfigError(f"split {kind} is a fold of MovieLens 100K: use --data ml-100k")
        if choose is None:
            from aerec.selection import chosen_names

            choose = ((given or own_file) and _has_choice(model)
                      and not set(chosen_names(model)) & set(params))
        training = TrainingOptions(
            patience=GIVEN_PATIENCE if patience is None and given else patience,
            refit=(given and model_cls.refittable) if refit is None else bool(refit),
            choose=bool(choose))
        return cls(model=model, data=src, params=params, preprocess=preprocess,
                   split=split_options, training=training)

    def with_params(self, **params: Any) -> RunSpec:
        """The same run with some hyperparameters changed (checked again)."""
        return replace(self, params={**self.params, **params}, resolved={})

    # -- run.json ---------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The plain dict that ``run.json`` stores (the spec plus ``resolved``)."""
        out: dict[str, Any] = {
            "model": self.model, "params": dict(self.params), "data": to_dict(self.data),
            "preprocess": to_dict(self.preprocess), "split": to_dict(self.split),
            "training": to_dict(self.training, unset=True)}
        if self.resolved:
            out["resolved"] = dict(self.resolved)
        if self.beta_search is not None:
            out["beta_search"] = dict(self.beta_search)
        if self.choice is not None:
            out["choice"] = dict(self.choice)
        return out

    @classmethod
    def from_json(cls, values: Mapping[str, Any], where: str = "run.json") -> RunSpec:
        """The spec of a ``run.json`` dict; every field is checked, unknown ones refused."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: expected an object")
        known = {"model", "params", "data", "preprocess", "split", "training", "resolved",
                 "beta_search", "choice", "format", "versions"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
        if not isinstance(values.get("model"), str):
            raise ConfigError(f"{where}: 'model' must be a model name")
        for name in ("params", "resolved"):
            if not isinstance(values.get(name, {}), Mapping):
                raise ConfigError(f"{where}: '{name}' must be an object")
        try:
            return cls(
                model=values["model"],
                data=from_dict(DataSource, values.get("data", {}), f"{where}: data"),
                params=dict(values.get("params", {})),
                preprocess=from_dict(Preprocessing, values.get("preprocess", {}),
                                     f"{where}: preprocess"),
                split=from_dict(SplitOptions, values.get("split", {}), f"{where}: split"),
                training=from_dict(TrainingOptions, values.get("training", {}),
                                   f"{where}: training"),
                resolved=dict(values.get("resolved", {})),
                beta_search=values.get("beta_search"), choice=values.get("choice"))
        except ConfigError as exc:
            message = str(exc)
            raise ConfigError(message if message.startswith(where) else f"{where}: {message}") \
                from None

    @classmethod
    def load(cls, run_dir: str | Path) -> RunSpec:
        """The spec of a run directory, read from its ``run.json``: running it again with
        :func:`aerec.run` gives the same numbers."""
        from aerec.run_dir import RunDir

        layout = RunDir(run_dir)
        return cls.from_json(layout.read_spec(), str(layout.run_json))

    # -- what the spec resolves to ----------------------------------------------------------------
    def make_model(self, **overrides: Any) -> Any:
        """An unfitted model with the run's hyperparameters (``overrides`` on top)."""
        from aerec.models import get_model_class

        return get_model_class(self.model)(**{**self.params, **overrides})

    @property
    def implicit(self) -> bool:
        """Whether the run's model ranks items (binarised input) rather than predicting ratings."""
        from aerec.models import get_model_class

        return get_model_class(self.model).implicit


def _has_choice(model: str) -> bool:
    from aerec.selection import has_choice

    return has_choice(model)


def _split_kinds() -> tuple[str, ...]:
    from aerec.data.split_kinds import SPLIT_KINDS

    return tuple(SPLIT_KINDS)


def _canonical_folds() -> tuple[str, ...]:
    from aerec.data.explicit_splits import CANONICAL_FOLDS

    return tuple(CANONICAL_FOLDS)
