"""Hyperparameters chosen on validation, for those the papers tuned per data set (issue 27).

:func:`choose_hyperparameters` takes a model's name, its other hyperparameters, the training
matrix and the validation users, and returns a :class:`Choice`: the values to fit with, every value
tried with its validation figure, and the wall time. It reads nothing but ``train`` and
``validation`` (the test rows are touched once, last, by whoever fits the chosen model).

What is chosen, and how (``docs/choice.md``):

* **EASE** ``lam`` and **EDLAE** ``lam`` then ``dropout``: over a regularisation path
  (:class:`aerec.models.regularisation_path.RegularisationPath`), where one factorisation serves
  every value: a grid of half decades from 1 to 10,000 plus the default, one refinement between
  the best value and its neighbours, and more values past an edge while the best is there. EDLAE
  takes ``lam``'s path at the default dropout, then the dropout's path at the chosen ``lam``.
  Where the path does not fit in memory, or would cost more than :data:`COARSE_FITS` fits on a
  large catalogue, a coarse search of full fits at ``lam / 4``, ``lam`` and ``4 lam`` instead.
* **Mult-VAE**'s beta cap: the paper's own search (:func:`aerec.beta_search.search_beta`): one
  training with beta annealed to 1, the beta of the best validation epoch becomes ``anneal_cap``
  and the training that follows is capped there.
* **RecVAE**'s ``gamma``: a grid of three (half, default, double), each trained with early
  stopping on validation.

:data:`CHOOSERS` is the registry (model name -> chooser) and :data:`CHOSEN` the names each
sets; a model not in them has nothing to choose. A chooser takes ``(cls, params, matrix, validation, context)`` and returns a
:class:`Choice`; new models (the sparse model's density, ELSA's rank) add an entry.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp

from aerec.data.synth_spec import available_memory
from aerec.errors import ConfigError
from aerec.evaluation import evaluate_ranking
from aerec.models import get_model_class
from aerec.models.base import Recommender
from aerec.models.regularisation_path import (RegularisationPath, fit_flops, path_flops,
                                              path_memory)

__all__ = ["Choice", "Tried", "CHOOSERS", "CHOSEN", "choose_hyperparameters", "choose_on_split",
           "chosen_names", "has_choice", "validation_figure"]

#: EASE / EDLAE ``lam`` values of the path: half decades from 1 to 10,000 (plus the default).
LAM_GRID = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
#: Where the path stops extending past an edge of :data:`LAM_GRID`.
LAM_LIMITS = (1e-2, 1e7)
#: EDLAE ``dropout`` values of the path (plus the default).
DROPOUT_GRID = (0.0, 0.1, 0.25, 0.5, 0.67, 0.75, 0.8, 0.9)
#: Full fits of the coarse search, at ``lam`` times these factors.
COARSE_FACTORS = (0.25, 1.0, 4.0)
COARSE_FITS = len(COARSE_FACTORS)
#: Below this many floating-point operations (a few seconds) the path is taken even where it
#: costs more than the coarse search: its fine grid is worth a few seconds.
SMALL_PATH_FLOPS = 1e11
#: RecVAE ``gamma`` values, as factors of the default.
GAMMA_FACTORS = (0.5, 1.0, 2.0)
#: Early stopping of the trainings of a grid (as ``benchmarks/given.py``).
PATIENCE = 20


@dataclass(frozen=True)
class Tried:
    """One hyperparameter's search: the values tried, their validation figures, the choice."""

    name: str
    values: tuple[float, ...]
    validation: tuple[float, ...]
    chosen: float

    def to_json(self) -> dict[str, Any]:
        order = np.argsort(self.values, kind="stable")  # ascending, whatever the search order
        return {"tried": [self.values[i] for i in order],
                "validation": [self.validation[i] for i in order], "chosen": self.chosen}


@dataclass(frozen=True)
class Choice:
    """What :func:`choose_hyperparameters` chose.

    Attributes
    ----------
    model : str
        The model's registered name.
    chosen : dict
        Hyperparameters to fit with (to merge over the caller's ``params``).
    tried : tuple of Tried
        Per chosen hyperparameter, every value tried and its validation figure.
    metric : str
        The validation figure (e.g. ``ndcg@100``).
    method : str
        ``path:items``, ``path:users``, ``fits``, ``beta-search`` or ``grid``.
    seconds : float
        Wall time of the choice: every fit and evaluation it made, except the fit of ``fitted``
        for EASE and EDLAE (made after the choice, to give the run its model and the time of
        one fit).
    fit_seconds : float or None
        Wall time of one fit at the chosen values (EASE, EDLAE), or of one training of the grid
        on average (RecVAE); None for the beta search, whose training anneals to 1.
    fitted : Recommender or None
        A model fitted on ``train`` at the chosen values, where the choice made one (the run
        may keep it when it does not refit); not part of :meth:`to_json`.
    """

    model: str
    chosen: dict[str, Any]
    tried: tuple[Tried, ...]
    metric: str
    method: str
    seconds: float
    fit_seconds: float | None = None
    fitted: Recommender | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The record for ``run.json``: ``params`` maps each name to tried / validation / chosen."""
        return {"metric": self.metric, "method": self.method,
                "params": {t.name: t.to_json() for t in self.tried},
                "seconds": self.seconds, "fit_seconds": self.fit_seconds}


@dataclass(frozen=True)
class _Context:
    metric: str
    trainer: Any
    available: int | None


def validation_figure(score_fn: Callable, validation: Any, metric: str = "ndcg@100") -> float:
    """``metric`` (``name@K``) of ``score_fn`` on the validation users (fold-in ranking)."""
    name, _, k = metric.partition("@")
    if not k.isdigit():
        raise ConfigError(f"metric must be NAME@K (e.g. ndcg@100), not {metric!r}")
    report = evaluate_ranking(score_fn, validation.fold_in.matrix, validation.targets.matrix,
                              ks=(int(k),), metrics=(name,))
    return float(report[metric])


def has_choice(model_name: str) -> bool:
    """Whether :func:`choose_hyperparameters` chooses anything for ``model_name``."""
    return model_name in CHOOSERS


def chosen_names(model_name: str) -> tuple[str, ...]:
    """The hyperparameters the choice sets for ``model_name`` (empty when it has none), so that a
    run can leave the choice out where the user set them."""
    return CHOSEN.get(model_name, ())


def choose_hyperparameters(
    model_name: str,
    params: dict[str, Any] | None,
    train: Any,
    validation: Any,
    *,
    metric: str = "ndcg@100",
    trainer: Any = None,
    available: int | None = None,
) -> Choice:
    """Choose ``model_name``'s data-dependent hyperparameters on ``validation`` only.

    Parameters
    ----------
    model_name : str
        A registered model with an entry in :data:`CHOOSERS` (see :func:`has_choice`).
    params : dict
        Its other hyperparameters (as for the model's constructor); a chosen one given here is
        the starting point (the path's default, the grid's centre).
    train : Interactions or scipy.sparse matrix
        The rows the model is fitted on (``Split.train``).
    validation : HeldOut
        The validation users (``Split.validation``); required.
    metric : str
        The validation figure, ``name@K`` (default ``ndcg@100``, the papers' selection).
    trainer : Trainer, optional
        For the trained models' searches (callbacks, progress); default: early stopping with
        patience :data:`PATIENCE` where a grid is trained, none for the beta search.
    available : int, optional
        Bytes of memory the path may use (default: what the machine has free).

    Returns
    -------
    Choice
    """
    if validation is None:
        raise ConfigError("choosing hyperparameters needs validation users")
    try:
        chooser = CHOOSERS[model_name]
    except KeyError:
        raise ConfigError(f"nothing to choose for {model_name!r}; models with a choice: "
                          f"{', '.join(sorted(CHOOSERS))}") from None
    cls = get_model_class(model_name)
    params = dict(params or {})
    cls(**params)  # unknown or invalid hyperparameters fail here, before any work
    matrix = sp.csr_matrix(getattr(train, "matrix", train))
    choice = chooser(cls, params, matrix, validation, _Context(metric, trainer, available))
    return replace(choice, model=model_name, metric=metric)


def choose_on_split(model_name: str, params: dict[str, Any] | None, split: Any, **kwargs) -> Choice:
    """:func:`choose_hyperparameters` on a :class:`~aerec.data.splits.Split`'s train and
    validation (never its test)."""
    return choose_hyperparameters(model_name, params, split.train, split.validation, **kwargs)


# -- EASE and EDLAE --------------------------------------------------------------------------
def _best(values: Sequence[float], figures: Sequence[float]) -> float:
    """The value of the highest figure; on equal figures the first tried."""
    return values[int(np.argmax(figures))]


def _search_lam(evaluate: Callable[[float], float], default: float) -> Tried:
    """Half decades plus the default, extended past an edge while the best is there, then one
    refinement at the geometric midpoints between the best and its neighbours."""
    tried: dict[float, float] = {}

    def at(value: float) -> None:
        value = float(value)
        if value not in tried:
            tried[value] = evaluate(value)

    for value in (*LAM_GRID, default):
        at(value)
    while True:
        values = sorted(tried)
        best = _best(list(tried), list(tried.values()))
        if best == values[-1] and best * 3 <= LAM_LIMITS[1]:
            at(best * 3)
        elif best == values[0] and best / 3 >= LAM_LIMITS[0]:
            at(best / 3)
        else:
            break
    values = sorted(tried)
    i = values.index(best)
    for j in (i - 1, i + 1):
        if 0 <= j < len(values):
            at(math.sqrt(values[j] * best))
    chosen = _best(list(tried), list(tried.values()))
    return Tried("lam", tuple(tried), tuple(tried.values()), chosen)


def _search_grid(name: str, evaluate: Callable[[float], float], grid: Sequence[float]) -> Tried:
    values = list(dict.fromkeys(float(v) for v in grid))
    figures = [evaluate(v) for v in values]
    return Tried(name, tuple(values), tuple(figures), _best(values, figures))


def _use_path(matrix: sp.csr_matrix, validation: Any, context: _Context, woodbury: bool) -> bool:
    m, n = matrix.shape
    available = context.available if context.available is not None else available_memory()
    if available is not None and path_memory(m, n, "auto", woodbury) > available // 2:
        return False
    flops = path_flops(m, n, validation.n_users, len(LAM_GRID) + 3, "auto", woodbury)
    return flops <= max(COARSE_FITS * fit_flops(n), SMALL_PATH_FLOPS)


def _fit_timed(cls: type, params: dict[str, Any], matrix: sp.csr_matrix) -> tuple[Recommender, float]:
    started = time.perf_counter()
    model = cls(**params).fit(matrix)
    return model, time.perf_counter() - started


def _choose_closed_form(cls, params, matrix, validation, context) -> Choice:
    started = time.perf_counter()
    config = cls(**params).config
    dropout = getattr(config, "dropout", None)
    if config.max_items is None and _use_path(matrix, validation, context, dropout is not None):
        path = RegularisationPath(matrix, "lam", dropout=dropout or 0.0)
        method = f"path:{path.side}"
        tried = [_search_lam(lambda v: validation_figure(path.scorer(v), validation,
                                                         context.metric), config.lam)]
        if dropout is not None:  # EDLAE: the dropout's path at the chosen lam
            path = RegularisationPath(matrix, "dropout", lam=tried[0].chosen)
            tried.append(_search_grid("dropout", lambda v: validation_figure(
                path.scorer(v), validation, context.metric), (*DROPOUT_GRID, dropout)))
        del path
    else:  # a coarse search of full fits (max_items: the path knows no item restriction)
        def evaluate(value: float) -> float:
            model = cls(**{**params, "lam": value}).fit(matrix)
            return validation_figure(model.score_tensor, validation, context.metric)

        tried = [_search_grid("lam", evaluate, [config.lam * f for f in COARSE_FACTORS])]
        method = "fits"
    chosen = {t.name: t.chosen for t in tried}
    seconds = time.perf_counter() - started
    fitted, fit_seconds = _fit_timed(cls, {**params, **chosen}, matrix)
    return Choice("", chosen, tuple(tried), "", method, seconds, fit_seconds, fitted)


# -- the trained models ------------------------------------------------------------------------
def _choose_beta(cls, params, matrix, validation, context) -> Choice:
    from aerec.beta_search import METRIC, search_beta

    started = time.perf_counter()
    if context.metric != METRIC:
        raise ConfigError(f"Mult-VAE's beta search selects on {METRIC}, not {context.metric}")
    callbacks = getattr(context.trainer, "callbacks", ())
    progress = getattr(context.trainer, "progress", False)
    search = search_beta(matrix, validation, params, callbacks=callbacks, progress=progress,
                         distributed=getattr(context.trainer, "distributed", None))
    tried = Tried("anneal_cap", tuple(r["beta"] for r in search.records),
                  tuple(r[METRIC] for r in search.records), search.best_beta)
    chosen = {"anneal_cap": search.best_beta, "anneal_epochs": search.anneal_epochs}
    return Choice("", chosen, (tried,), "", "beta-search", time.perf_counter() - started)


def _choose_gamma(cls, params, matrix, validation, context) -> Choice:
    from aerec.training import Trainer

    started = time.perf_counter()
    trainer = context.trainer or Trainer(patience=PATIENCE)
    default = cls(**params).config.gamma
    models: dict[float, Recommender] = {}
    seconds: list[float] = []

    def evaluate(gamma: float) -> float:
        started = time.perf_counter()
        models[gamma] = trainer.fit(cls(**{**params, "gamma": gamma}), matrix, validation)
        seconds.append(time.perf_counter() - started)
        return validation_figure(models[gamma].score_tensor, validation, context.metric)

    tried = _search_grid("gamma", evaluate, [default * f for f in GAMMA_FACTORS])
    return Choice("", {"gamma": tried.chosen}, (tried,), "", "grid",
                  time.perf_counter() - started, float(np.mean(seconds)), models[tried.chosen])


#: Model name -> the hyperparameters its chooser sets (``Choice.chosen``'s keys).
CHOSEN: dict[str, tuple[str, ...]] = {
    "ease": ("lam",),
    "edlae": ("lam", "dropout"),
    "mult-vae": ("anneal_cap", "anneal_epochs"),
    "recvae": ("gamma",),
}
#: Model name -> chooser ``(cls, params, matrix, validation, context) -> Choice``. The sparse
#: model's density and ELSA's rank will be added here by their models' authors.
CHOOSERS: dict[str, Callable[..., Choice]] = {
    "ease": _choose_closed_form,
    "edlae": _choose_closed_form,
    "mult-vae": _choose_beta,
    "recvae": _choose_gamma,
}
