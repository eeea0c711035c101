"""SANSA: its factorisations, the approximate inverse, the density settings, and EASE as its limit."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from aerec.errors import ConfigError
from aerec.models import EASE, SANSA
from aerec.models.budget import parse_memory
from aerec.models.sparse_ldl import exact_ldl, gramian, incomplete_ldl, prune_columns
from aerec.models.umr import umr_inverse


def _data(users=80, items=30, seed=0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((users, items)) < 0.25).astype(np.float32)
    dense[:, 0] = 1  # one very popular item
    return sp.csr_matrix(dense)


def _full(lower: sp.csc_matrix) -> np.ndarray:
    return (lower + sp.triu(lower.T, k=1)).toarray()


def test_gramian_is_the_lower_triangle_of_xtx_plus_lam():
    x = _data()
    lower = gramian(x, 7.0, None)
    expected = (x.T @ x).toarray() + 7.0 * np.eye(x.shape[1])
    np.testing.assert_array_equal(_full(lower), expected)
    assert sp.triu(lower, k=1).nnz == 0


def test_pruned_gramian_keeps_the_diagonal_and_at_most_twice_cap_per_item_on_average():
    x = _data()
    lower = gramian(x, 7.0, 3)
    full = _full(lower)
    expected = (x.T @ x).toarray() + 7.0 * np.eye(x.shape[1])
    np.testing.assert_array_equal(np.diag(full), np.diag(expected))
    kept = full != 0
    assert np.all(full[kept] == expected[kept])  # values are the true ones where kept
    off = kept.sum() - x.shape[1]
    assert 3 * x.shape[1] <= off <= 2 * 3 * x.shape[1]


@pytest.mark.parametrize("factorise", ["exact", "incomplete-uncut"])
def test_factors_reproduce_the_permuted_matrix(factorise):
    lower = gramian(_data(), 5.0, None)
    n = lower.shape[0]
    f = exact_ldl(lower) if factorise == "exact" else incomplete_ldl(lower, cap=n)
    unit = np.eye(n) + f.strict_lower.toarray()
    assert np.allclose(np.triu(unit, 1), 0)
    a = _full(lower)[np.ix_(f.perm, f.perm)]
    np.testing.assert_allclose(unit @ np.diag(f.d) @ unit.T, a, rtol=1e-10, atol=1e-8)
    assert f.shift == 0.0


def test_incomplete_factor_keeps_cap_entries_per_column():
    lower = gramian(_data(), 5.0, None)
    f = incomplete_ldl(lower, cap=4)
    assert np.diff(f.strict_lower.indptr).max() <= 4


def test_a_pivot_broken_by_dropping_is_retried_with_the_dropped_entries_compensated():
    # positive definite (eigenvalues 0.1, 0.1, 2.8), but with one entry a column the
    # Schur complement loses it; Jennings-Malik compensation keeps every pivot positive
    a = np.array([[1.0, 0.9, 0.9], [0.9, 1.0, 0.9], [0.9, 0.9, 1.0]])
    f = incomplete_ldl(sp.csc_matrix(np.tril(a)), cap=1)
    assert f.compensated and f.shift == 0.0
    assert np.all(f.d > 0)
    unit = np.eye(3) + f.strict_lower.toarray()
    assert np.count_nonzero(f.strict_lower.toarray(), axis=0).max() == 1
    # what was factorised is A plus a positive semi-definite compensation
    assert np.all(np.linalg.eigvalsh(unit @ np.diag(f.d) @ unit.T - a[np.ix_(f.perm, f.perm)])
                  > -1e-12)


def test_a_broken_pivot_is_retried_with_a_growing_diagonal_shift():
    # [[1, 2], [2, 1]] is indefinite: the factor of A + s diag(A) exists once (1 + s)^2 > 4
    lower = sp.csc_matrix(np.array([[1.0, 0.0], [2.0, 1.0]]))
    f = incomplete_ldl(lower, cap=1)
    assert f.shift == pytest.approx(1e-3 * 2**10)  # the first of 1e-3 * 2^k above 1
    assert np.all(f.d > 0)


def test_umr_inverts_a_unit_lower_triangle_when_the_density_allows_it():
    rng = np.random.default_rng(1)
    n = 12
    strict = np.tril(rng.normal(scale=0.2, size=(n, n)), -1)
    m, residual = umr_inverse(sp.csc_matrix(strict), cap=n, steps=40)
    k = np.eye(n) + m.toarray()
    np.testing.assert_allclose(k @ (np.eye(n) + strict), np.eye(n), atol=1e-6)
    assert residual < 1e-6


def test_prune_columns_keeps_the_largest_magnitudes():
    m = sp.csc_matrix(np.array([[1.0, 0.0], [-5.0, 2.0], [3.0, -1.0]]))
    out = prune_columns(m, 2).toarray()
    np.testing.assert_array_equal(out, [[0.0, 0.0], [-5.0, 2.0], [3.0, -1.0]])


def test_at_full_density_sansa_scores_as_ease():
    x = _data()
    ease = EASE(lam=5.0).fit(x)
    sansa = SANSA(lam=5.0, density=1.0, umr_steps=60).fit(x)
    assert sansa.exact_
    np.testing.assert_allclose(sansa.score(x[:20]), ease.score(x[:20]), atol=2e-3)


def test_the_incomplete_path_at_full_density_scores_as_ease():
    x = _data()
    ease = EASE(lam=5.0).fit(x)
    sansa = SANSA(lam=5.0, density=1.0, umr_steps=60, factorization="incomplete").fit(x)
    assert not sansa.exact_
    np.testing.assert_allclose(sansa.score(x[:20]), ease.score(x[:20]), atol=2e-3)


def test_weights_have_a_zero_diagonal_and_follow_the_density():
    x = _data()
    model = SANSA(lam=5.0, density=0.2).fit(x)
    sims = model._item_similarities(np.arange(x.shape[1])).numpy()
    np.testing.assert_allclose(np.diag(sims), 0.0, atol=1e-5)
    per_column = np.diff(sp.csc_matrix(model.w2_).indptr)
    assert per_column.max() <= 1 + 6  # the unit diagonal and ceil(0.2 * 30) entries


def test_memory_budget_sets_the_density_and_is_recorded():
    from aerec.data.interactions import as_interactions
    from aerec.models import sansa as S

    data = as_interactions(_data(items=30))
    budget = S.memory_needed(30, 5, data.matrix.nnz)
    model = SANSA(memory=str(budget))
    resolved = model.resolved_for(data)
    assert resolved["per_item"] == 5
    assert resolved["density"] == pytest.approx(5 / 30)
    assert SANSA(density=0.5).resolved_for(data)["per_item"] == 15


def test_default_density_is_300_per_item_when_it_fits():
    assert SANSA().resolve_density(1000) == pytest.approx(0.3)
    assert SANSA().resolve_density(100) == 1.0


@pytest.mark.parametrize("params", [{"density": 2}, {"density": 0}, {"memory": "lots"},
                                    {"memory": "-1GB"}, {"lam": 0}, {"factorization": "lu"}])
def test_bad_settings_are_one_line_config_errors(params):
    with pytest.raises(ConfigError) as info:
        SANSA(**params)
    assert "\n" not in str(info.value)


def test_parse_memory_units():
    assert parse_memory("4GB") == 4 * 10**9
    assert parse_memory("512MiB") == 512 * 2**20
    assert parse_memory("2.5e3") == 2500
    assert parse_memory(1024) == 1024
