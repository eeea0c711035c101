"""The EASE / EDLAE regularisation path: its B at each value is a direct fit's B."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from aerec.models import EASE, EDLAE
from aerec.models.regularisation_path import RegularisationPath, path_flops, path_memory


def _matrix(n_users: int, n_items: int, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    x = rng.random((n_users, n_items)) < np.linspace(0.6, 0.05, n_items)  # uneven popularity
    x[:, 3] = False  # an item nobody trained on: zero row and column of G
    x[:, 5] |= x[:, 6]  # correlated items: G far from diagonal
    return sp.csr_matrix(x.astype(np.float32) * 3.0)  # values other than 1: binarised


def _reference(x: sp.csr_matrix, lam: float, dropout: float) -> np.ndarray:
    """EASE / EDLAE written out densely in float64."""
    b = (x.toarray() != 0).astype(np.float64)
    g = b.T @ b
    inv = np.linalg.inv(g + np.diag(lam + dropout / (1 - dropout) * np.diag(g)))
    weights = np.eye(len(g)) - inv / np.diag(inv)[np.newaxis, :]
    np.fill_diagonal(weights, 0.0)
    return weights


SHAPES = [(60, 25), (20, 35)]  # more users than items, and fewer


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("side", ["items", "users"])
@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_the_lam_path_gives_the_direct_weights_at_every_lam(shape, side, dropout):
    x = _matrix(*shape)
    path = RegularisationPath(x, "lam", dropout=dropout, side=side, dtype=np.float64)
    for lam in (0.5, 7.0, 300.0):
        np.testing.assert_allclose(path.weights(lam), _reference(x, lam, dropout), rtol=0,
                                   atol=1e-11)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("side", ["items", "users"])
def test_the_dropout_path_gives_the_direct_weights_at_every_dropout(shape, side):
    x = _matrix(*shape, seed=1)
    path = RegularisationPath(x, "dropout", lam=4.0, side=side, dtype=np.float64)
    for dropout in (0.0, 0.33, 0.8):
        np.testing.assert_allclose(path.weights(dropout), _reference(x, 4.0, dropout), rtol=0,
                                   atol=1e-11)


@pytest.mark.parametrize("side", ["items", "users"])
def test_the_path_matches_the_models_own_fits(side):
    x = _matrix(40, 30, seed=2)
    np.testing.assert_allclose(
        RegularisationPath(x, side=side, dtype=np.float64).weights(25.0),
        EASE(lam=25.0).fit(x).weights_.numpy(), atol=1e-6)  # the fit keeps float32
    np.testing.assert_allclose(
        RegularisationPath(x, "dropout", lam=25.0, side=side, dtype=np.float64).weights(0.6),
        EDLAE(lam=25.0, dropout=0.6).fit(x).weights_.numpy(), atol=1e-6)


@pytest.mark.parametrize("side", ["items", "users"])
def test_float32_scores_are_the_float64_scores_rounded(side):
    x = _matrix(50, 40, seed=3)
    histories = x[:7]
    exact = RegularisationPath(x, side=side, dtype=np.float64).scorer(12.0)(histories)
    fast = RegularisationPath(x, side=side).scorer(12.0)(histories)
    assert fast.dtype == np.float32
    np.testing.assert_allclose(fast, exact, atol=1e-5 * np.abs(exact).max())
    np.testing.assert_allclose(exact, (histories.toarray() != 0) @ _reference(x, 12.0, 0.0),
                               atol=1e-10)  # binarised h times B


def test_side_auto_takes_the_cheaper_factorisation():
    assert RegularisationPath(_matrix(60, 25)).side == "items"
    assert RegularisationPath(_matrix(20, 35)).side == "users"
    assert RegularisationPath(_matrix(30, 35), dropout=0.5).side == "items"  # per-value solves
    assert RegularisationPath(_matrix(10, 60), "dropout").side == "users"
    assert path_flops(100, 1000, 100, 12, "users") < path_flops(100, 1000, 100, 12, "items")
    assert path_memory(1000, 200) == 5 * 200 * 200 * 8
    assert path_memory(200, 1000) == (200 * 200 + 3 * 200 * 1000) * 8


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="vary"):
        RegularisationPath(_matrix(20, 10), "gamma")
    with pytest.raises(ValueError, match="out of range"):
        RegularisationPath(_matrix(20, 35), "dropout", lam=1.0).scorer(1.0)
