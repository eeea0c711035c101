"""K-fold cross-validation over users: the folds, the targets, and a known ranking of configs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.cross_validation import (
    FoldScores, best, cross_validate, refit_best, split_targets, user_folds,
)
from aerec.errors import ConfigError
from aerec.evaluation import evaluate_ranking
from aerec.models import EASE, IAutoRec
from aerec.models.base import Recommender


@dataclass(frozen=True)
class _SignedConfig:
    sign: float = 1.0


class SignedPopularity(Recommender):
    """Training popularity times ``sign``: +1 is the popularity baseline, -1 its reverse."""

    name = "signed-popularity"
    Config = _SignedConfig

    def _fit(self, matrix: sp.csr_matrix, validation: Any = None, trainer: Any = None) -> None:
        counts = np.bincount(matrix.indices, minlength=matrix.shape[1]).astype(np.float32)
        self.counts_ = torch.from_numpy(counts * self.config.sign)

    def _score(self, user_items: sp.csr_matrix) -> torch.Tensor:
        return self.counts_.unsqueeze(0).repeat(user_items.shape[0], 1)


def _power_law(n_users: int = 120, n_items: int = 40, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    x = rng.random((n_users, n_items)) < 0.9 * popularity
    x[:, :3] = True  # everybody has 5 or more items
    x[:, 3:6] |= rng.random((n_users, 3)) < 0.9
    return sp.csr_matrix(x.astype(np.float32))


def test_user_folds_partition_the_users_and_repeat_under_a_seed():
    folds = user_folds(23, 5, seed=4)
    assert [len(f) for f in folds] == [5, 5, 5, 4, 4]
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(23))
    assert all(np.all(np.diff(f) > 0) for f in folds)
    assert all(np.array_equal(a, b) for a, b in zip(folds, user_folds(23, 5, seed=4)))
    assert not all(np.array_equal(a, b) for a, b in zip(folds, user_folds(23, 5, seed=5)))


@pytest.mark.parametrize("folds", [1, 0, 2.0, True])
def test_user_folds_refuse_fewer_than_two_folds(folds):
    with pytest.raises(ConfigError, match="folds"):
        user_folds(10, folds, seed=0)


def test_split_targets_draws_a_fifth_of_each_user_with_five_items_or_more():
    rows = [list(range(10)), list(range(4)), list(range(7)), [3, 8, 9, 11, 12]]
    m = sp.csr_matrix((np.ones(sum(map(len, rows)), np.float32),
                       ([r for r, items in enumerate(rows) for _ in items], sum(rows, []))),
                      shape=(4, 13))
    fold_in, targets = split_targets(m, 0.2, seed=1)
    assert np.diff(targets.indptr).tolist() == [2, 0, 1, 1]  # int(0.2 n) for n >= 5
    assert (fold_in + targets != m).nnz == 0
    assert fold_in.multiply(targets).nnz == 0
    again, _ = split_targets(m, 0.2, seed=1)
    assert (again != fold_in).nnz == 0


def test_popularity_beats_its_reverse_and_each_fold_is_scored_as_by_hand():
    m = _power_law()
    results = cross_validate(SignedPopularity, m, [{"sign": -1.0}, {"sign": 1.0}], folds=4, seed=3)
    assert [r.params for r in results] == [{"sign": -1.0}, {"sign": 1.0}]
    assert all(len(r.per_fold) == 4 for r in results)
    assert results[1].mean > results[0].mean + 0.2
    assert best(results).params == {"sign": 1.0}
    # Fold 2 by hand: trained on the other folds' users only, scored on this fold's targets.
    held = user_folds(m.shape[0], 4, seed=3)[2]
    rest = np.setdiff1d(np.arange(m.shape[0]), held)
    fold_in, targets = split_targets(m[held], 0.2, seed=3 + 2)
    model = SignedPopularity().fit(m[rest])
    expected = evaluate_ranking(model.score_tensor, fold_in, targets, ks=(100,))["ndcg@100"]
    assert results[1].per_fold[2] == expected


def test_fixed_parameters_reach_every_fit_and_refit_uses_all_rows():
    m = _power_law(seed=1)
    # A pinned sign gives every fold the scores of that sign given in the grid, not the default's.
    pinned = cross_validate(SignedPopularity, m, [{}], fixed={"sign": -1.0}, folds=3, seed=0)
    gridded = cross_validate(SignedPopularity, m, [{"sign": -1.0}], folds=3, seed=0)
    default = cross_validate(SignedPopularity, m, [{}], folds=3, seed=0)
    assert pinned[0].per_fold == gridded[0].per_fold != default[0].per_fold
    results = cross_validate(EASE, m, [{"lam": 1.0}, {"lam": 50.0}], fixed={"max_items": 30},
                             folds=3, seed=0)
    model = refit_best(EASE, m, results, fixed={"max_items": 30})
    assert model.get_params() == {"lam": best(results).params["lam"], "max_items": 30,
                                  "precision": "auto"}
    direct = EASE(lam=best(results).params["lam"], max_items=30).fit(m)
    assert torch.equal(model.weights_, direct.weights_)


def test_fold_scores_mean_and_standard_error():
    scores = FoldScores({"lam": 1.0}, [0.2, 0.4, 0.6])
    assert scores.mean == pytest.approx(0.4)
    assert scores.standard_error == pytest.approx(0.2 / np.sqrt(3))
    assert FoldScores({}, [0.3]).standard_error == 0.0


def test_refuses_rating_models_an_empty_grid_and_a_bad_metric():
    m = _power_law()
    with pytest.raises(ConfigError, match="rating model"):
        cross_validate(IAutoRec, m, [{}])
    with pytest.raises(ConfigError, match="empty"):
        cross_validate(EASE, m, [])
    with pytest.raises(ConfigError, match="metric"):
        cross_validate(EASE, m, [{"lam": 1.0}], metric="auc")
