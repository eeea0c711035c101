"""K-fold cross-validation over users, for the hyperparameters of models that fit in seconds.

The strong-generalization split keeps one validation group of held-out users. On ML-100K that is
94 users, and their NDCG@100 is noisy enough that EASE's lambda 250 and 500 swap places from one
split seed to the next. For closed-form models (EASE, EDLAE, popularity) a steadier choice is
cheap: split the users that may be trained on (never the test users) into K folds; for each fold,
fit on the other folds and score the fold's users from 80 % of their items against the other 20 %,
as the held-out users of the split are scored; average over the folds. Then refit the chosen
configuration on all of those users (:func:`refit_best`).

Iterative models are better served by :mod:`aerec.tuning` and their own validation: K fits per
configuration multiply their training time by K.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import scipy.sparse as sp

from aerec.data.splits import MIN_ITEMS_TO_SPLIT, lowest_keys_per_row
from aerec.errors import ConfigError
from aerec.evaluation import evaluate_ranking
from aerec.models.base import Recommender


@dataclass
class FoldScores:
    """One configuration's metric on every fold.

    Attributes
    ----------
    params : dict
        The hyperparameters (on top of the fixed ones).
    per_fold : list of float
        The metric on each fold, in fold order.
    """

    params: dict[str, Any]
    per_fold: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        """Mean over the folds."""
        return float(np.mean(self.per_fold))

    @property
    def standard_error(self) -> float:
        """Standard error of the mean over the folds (0 for a single fold)."""
        n = len(self.per_fold)
        return float(np.std(self.per_fold, ddof=1) / math.sqrt(n)) if n > 1 else 0.0


def user_folds(n_users: int, folds: int, seed: int) -> list[np.ndarray]:
    """``folds`` disjoint, sorted arrays of row indices covering ``range(n_users)``.

    The users are permuted by ``numpy.random.default_rng(seed)`` and cut into near-equal parts.
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2, got {folds!r}")
    if n_users < folds:
        raise ConfigError(f"{n_users} users cannot be cut into {folds} folds")
    order = np.random.default_rng(seed).permutation(n_users)
    return [np.sort(part) for part in np.array_split(order, folds)]


def split_targets(matrix: sp.csr_matrix, fraction: float, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Each row's fold-in and target entries: ``int(fraction * n)`` random targets per row with
    ``n >= 5`` entries (rows with fewer keep everything as fold-in), as the split draws them.

    Returns
    -------
    (fold_in, targets) : pair of csr_matrix
        Disjoint, summing to ``matrix``.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"target fraction must be in (0, 1), got {fraction!r}")
    m = sp.csr_matrix(matrix)
    n = np.diff(m.indptr)
    n_targets = np.where(n >= MIN_ITEMS_TO_SPLIT, (fraction * n).astype(np.int64), 0)
    is_target = lowest_keys_per_row(m.indptr, np.random.default_rng(seed).random(m.nnz), n_targets)
    return _keep(m, ~is_target), _keep(m, is_target)


def _keep(m: sp.csr_matrix, mask: np.ndarray) -> sp.csr_matrix:
    out = m.copy()
    out.data = np.where(mask, out.data, 0).astype(m.dtype)
    out.eliminate_zeros()
    return out


def cross_validate(
    model_cls: type[Recommender],
    matrix: sp.csr_matrix,
    grid: Iterable[dict[str, Any]],
    *,
    fixed: dict[str, Any] | None = None,
    folds: int = 5,
    target_fraction: float = 0.2,
    metric: str = "ndcg@100",
    seed: int = 0,
) -> list[FoldScores]:
    """Score every configuration of ``grid`` by K-fold cross-validation over the rows of ``matrix``.

    Parameters
    ----------
    model_cls : type of Recommender
        An implicit-feedback model (ranked by ``metric``).
    matrix : scipy.sparse.csr_matrix
        Users x items; every row may be trained on (pass no test user).
    grid : iterable of dict
        The configurations to compare.
    fixed : dict, optional
        Hyperparameters shared by every configuration.
    folds : int
        Number of folds of users (default 5).
    target_fraction : float
        Share of a held-out user's items scored as targets (default 0.2, the split's).
    metric : str
        A key of :func:`aerec.evaluation.evaluate_ranking`, ``ndcg@K`` or ``truncated_recall@K``.
    seed : int
        Seed of the folds and of the targets.

    Returns
    -------
    list of FoldScores
        One per configuration, in grid order; the same folds and targets for all of them.
    """
    if not model_cls.implicit:
        raise ConfigError(f"{model_cls.name} is a rating model; cross_validate ranks items")
    k = _cutoff(metric)
    matrix = sp.csr_matrix(matrix)
    configs = [FoldScores(dict(params)) for params in grid]
    if not configs:
        raise ConfigError("the grid is empty")
    for index, held in enumerate(user_folds(matrix.shape[0], folds, seed)):
        rest = np.setdiff1d(np.arange(matrix.shape[0]), held)
        fold_in, targets = split_targets(matrix[held], target_fraction, seed + index)
        for config in configs:
            model = model_cls(**(fixed or {}), **config.params).fit(matrix[rest])
            scores = evaluate_ranking(model.score_tensor, fold_in, targets, ks=(k,))
            config.per_fold.append(scores[metric])
    return configs


def best(results: list[FoldScores]) -> FoldScores:
    """The configuration with the highest mean (the first one among equals)."""
    return max(results, key=lambda r: r.mean)


def refit_best(model_cls: type[Recommender], matrix: sp.csr_matrix, results: list[FoldScores],
               fixed: dict[str, Any] | None = None) -> Recommender:
    """The best configuration of ``results``, fitted on all of ``matrix``."""
    return model_cls(**(fixed or {}), **best(results).params).fit(matrix)


def _cutoff(metric: str) -> int:
    name, _, k = metric.partition("@")
    if name not in {"ndcg", "truncated_recall", "recall"} or not k.isdigit() or int(k) < 1:
        raise ConfigError(f"metric must look like 'ndcg@100' or 'truncated_recall@20', got {metric!r}")
    return int(k)
