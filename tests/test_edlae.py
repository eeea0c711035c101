"""EDLAE: the closed form with the dropout penalty against a dense solve; dropout 0 is EASE."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from aerec.models import EASE, EDLAE, get_model_class


def _data(n_users: int = 50, n_items: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Items of very different popularity, so the item-dependent penalty matters.
    x = (rng.random((n_users, n_items)) < np.linspace(0.9, 0.1, n_items)).astype(np.float32)
    return x


def _reference(x: np.ndarray, lam: float, p: float) -> np.ndarray:
    """Steck (2020), full rank, written out densely in float64."""
    g = x.T.astype(np.float64) @ x
    penalty = np.diag(p / (1 - p) * np.diag(g) + lam)
    inv = np.linalg.inv(g + penalty)
    b = np.eye(len(g)) - inv / np.diag(inv)[np.newaxis, :]
    np.fill_diagonal(b, 0.0)
    return b


def test_weights_and_scores_match_a_dense_reference_solve():
    x = _data()
    model = EDLAE(lam=3.0, dropout=0.4).fit(sp.csr_matrix(x))
    b = _reference(x, 3.0, 0.4)
    np.testing.assert_allclose(model.weights_.numpy(), b, atol=1e-6)
    assert np.all(np.diag(model.weights_.numpy()) == 0.0)
    np.testing.assert_allclose(model.score(sp.csr_matrix(x[:5])), x[:5] @ b, atol=1e-5)


def test_the_solution_satisfies_the_penalised_optimality_condition():
    # Off the diagonal, the gradient of ||X - XB||^2 + ||Lambda^(1/2) B||^2 vanishes:
    # (G + Lambda) B - G = 0 there, with Lambda = diag(p / (1 - p) G_jj + lam).
    x = _data(seed=2)
    lam, p = 2.0, 0.25
    b = EDLAE(lam=lam, dropout=p).fit(sp.csr_matrix(x)).weights_.numpy().astype(np.float64)
    g = x.T.astype(np.float64) @ x
    residual = (g + np.diag(p / (1 - p) * np.diag(g) + lam)) @ b - g
    np.testing.assert_allclose(residual[~np.eye(len(g), dtype=bool)], 0.0, atol=1e-4)


def test_without_dropout_it_is_ease_to_the_bit():
    x = sp.csr_matrix(_data(seed=1))
    a = EDLAE(lam=7.0, dropout=0.0).fit(x).weights_
    b = EASE(lam=7.0).fit(x).weights_
    assert np.array_equal(a.numpy(), b.numpy())


def test_dropout_differs_from_ease_at_the_mean_penalty():
    # A popularity-dependent penalty is not a constant one: the reference solve with the mean
    # penalty as a constant lambda gives other weights.
    x = _data(seed=3)
    g = x.T.astype(np.float64) @ x
    p = 0.5
    mean_penalty = float(np.mean(p / (1 - p) * np.diag(g) + 1.0))
    edlae = EDLAE(lam=1.0, dropout=p).fit(sp.csr_matrix(x)).weights_.numpy()
    assert np.abs(edlae - _reference(x, mean_penalty, 0.0)).max() > 1e-3


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5])
def test_dropout_must_be_a_probability_below_one(dropout):
    with pytest.raises(ValueError, match="dropout"):
        EDLAE(dropout=dropout)


def test_registered_with_the_documented_defaults():
    cls = get_model_class("edlae")
    assert cls is EDLAE
    assert EDLAE().get_params() == {"lam": 100.0, "max_items": None, "precision": "auto",
                                   "dropout": 0.67}
