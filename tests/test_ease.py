"""EASE: the closed form against a dense numpy solve, the memory check, max_items, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from aerec.cli import main
from aerec.errors import ConfigError
from aerec.models import ease as ease_module
from aerec.models.ease import EASE, check_memory, largest_fitting, memory_needed


def _data(n_users: int = 40, n_items: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.random((n_users, n_items)) < 0.3).astype(np.float32)
    x[:, 0] = 1.0  # one item everybody has: the most popular
    return x


def _reference(x: np.ndarray, lam: float) -> np.ndarray:
    """Steck's formula, written out densely in float64."""
    g = x.T.astype(np.float64) @ x
    p = np.linalg.inv(g + lam * np.eye(g.shape[0]))
    b = np.eye(g.shape[0]) - p / np.diag(p)[np.newaxis, :]
    np.fill_diagonal(b, 0.0)
    return b


def test_weights_and_scores_match_a_dense_reference_solve():
    x = _data()
    model = EASE(lam=2.0).fit(sp.csr_matrix(x))
    b = _reference(x, 2.0)
    np.testing.assert_allclose(model.weights_.numpy(), b, atol=1e-6)
    assert np.all(np.diag(model.weights_.numpy()) == 0.0)
    histories = sp.csr_matrix(x[:7])
    np.testing.assert_allclose(model.score(histories), x[:7] @ b, atol=1e-5)


def test_the_solution_satisfies_the_optimality_condition():
    # d/dB ||X - XB||^2 + lam ||B||^2 = 0 off the diagonal: (G + lam I) B - G vanishes there
    x = _data(seed=3)
    lam = 5.0
    b = EASE(lam=lam).fit(sp.csr_matrix(x)).weights_.numpy().astype(np.float64)
    g = x.T.astype(np.float64) @ x
    residual = (g + lam * np.eye(len(g))) @ b - g
    off = ~np.eye(len(g), dtype=bool)
    np.testing.assert_allclose(residual[off], 0.0, atol=1e-4)


def test_ratings_are_binarised():
    x = _data()
    stars = x * np.random.default_rng(1).integers(1, 6, size=x.shape)
    a = EASE(lam=2.0).fit(sp.csr_matrix(x)).weights_
    b = EASE(lam=2.0).fit(sp.csr_matrix(stars.astype(np.float32))).weights_
    assert np.array_equal(a.numpy(), b.numpy())


def test_memory_estimate_counts_one_dense_matrix_and_a_few_blocks():
    # one items x items float64 matrix + WORKSPACE_BLOCKS blocks of rows + the sparse copies
    assert ease_module.DENSE_MATRICES == 1
    n, nnz = 40_981, 810_128  # the issue's data set
    rows = ease_module.block_rows(n)
    assert rows == ease_module.BLOCK_BYTES // (8 * n) == 409
    workspace = ease_module.WORKSPACE_BLOCKS * rows * n * 8
    assert memory_needed(n, nnz) == n * n * 8 + workspace + nnz * ease_module.SPARSE_BYTES_PER_ENTRY
    assert 12.5 * 2**30 < memory_needed(n, nnz) < 13.1 * 2**30  # the matrix is 12.51 GiB
    # a small matrix is cut in MIN_BLOCKS (8) blocks: 2 rows each for 12 items
    assert ease_module.block_rows(12) == 2
    assert memory_needed(12) == 12 * 12 * 8 + ease_module.WORKSPACE_BLOCKS * 2 * 12 * 8
    assert memory_needed(12, dtype="float32") == 12 * 12 * 4 + ease_module.WORKSPACE_BLOCKS * 2 * 12 * 8


@pytest.mark.parametrize("available", [0, 1, 5_000, 10**6, 9_600_000_000, 21.3 * 2**30, 2**40])
def test_largest_fitting_is_the_largest_that_fits(available):
    available = int(available)
    n = largest_fitting(available, nnz=1000)
    assert n == 0 or memory_needed(n, 1000) <= available
    assert memory_needed(n + 1, 1000) > available


def test_the_issues_data_set_now_fits_where_it_was_refused():
    # The issue: 40,981 items refused with 21.3 GiB available, "N <= 30,835" (three matrices).
    available = int(21.3 * 2**30)
    assert largest_fitting(available, nnz=810_128) > 52_000
    check_memory(40_981, available=available, nnz=810_128)


def test_refuses_before_allocating_when_memory_is_short(monkeypatch):
    x = _data(n_items=12)
    nnz = int((x != 0).sum())
    monkeypatch.setattr(ease_module, "available_memory", lambda: memory_needed(10, nnz))
    monkeypatch.setattr(ease_module, "gram_matrix", lambda *a: pytest.fail("allocated anyway"))
    with pytest.raises(ConfigError) as err:
        EASE(lam=1.0, precision="fp64").fit(sp.csr_matrix(x))
    message = str(err.value)
    assert "12 items" in message and "one dense 12 x 12 float64 matrix" in message
    assert "--set max_items=N" in message and "N <= 10 fits" in message
    assert "--model sansa" in message and "\n" not in message


def test_auto_precision_takes_float32_where_float64_does_not_fit(monkeypatch):
    x = _data(n_items=12)
    nnz = int((x != 0).sum())
    fp32 = memory_needed(12, nnz, dtype="float32")
    assert fp32 < memory_needed(12, nnz)
    monkeypatch.setattr(ease_module, "available_memory", lambda: fp32)
    with pytest.warns(ease_module.PrecisionNotice, match="float32"):
        model = EASE(lam=1.0).fit(sp.csr_matrix(x))
    assert model.precision_ == "fp32"
    b = _reference(x, 1.0)
    np.testing.assert_allclose(model.weights_.numpy(), b, atol=1e-4 * np.abs(b).max())
    from aerec.data.interactions import as_interactions
    assert EASE().resolved_for(as_interactions(sp.csr_matrix(x))) == {"precision": "fp32"}


def test_auto_precision_is_float64_where_it_fits(monkeypatch):
    x = _data(n_items=12)
    monkeypatch.setattr(ease_module, "available_memory", lambda: 2**40)
    assert EASE(lam=1.0).fit(sp.csr_matrix(x)).precision_ == "fp64"


def test_neither_precision_fitting_names_both_limits_and_the_sparse_models(monkeypatch):
    x = _data(n_items=12)
    nnz = int((x != 0).sum())
    monkeypatch.setattr(ease_module, "available_memory", lambda: memory_needed(8, nnz, "float32"))
    with pytest.raises(ConfigError) as err:
        EASE(lam=1.0).fit(sp.csr_matrix(x))
    message = str(err.value)
    fits64 = largest_fitting(memory_needed(8, nnz, "float32"), nnz)
    assert f"at most {fits64:,} items fit in float64 and 8 in float32" in message
    assert "--model sansa or --model elsa" in message and "N <= 8 fits" in message


def test_max_items_makes_it_fit_and_keeps_the_most_popular(monkeypatch):
    x = _data(n_items=12)
    nnz = int((x != 0).sum())
    monkeypatch.setattr(ease_module, "available_memory", lambda: memory_needed(10, nnz))
    model = EASE(lam=1.0, max_items=10).fit(sp.csr_matrix(x))
    counts = x.sum(axis=0)
    expected = np.sort(np.argsort(-counts, kind="stable")[:10])
    assert model.items_.tolist() == expected.tolist()
    scores = model.score(sp.csr_matrix(x[:5]))
    dropped = np.setdiff1d(np.arange(12), expected)
    assert np.all(scores[:, dropped] == -np.inf)
    b = _reference(x[:, expected], 1.0)
    np.testing.assert_allclose(scores[:, expected], x[:5][:, expected] @ b, atol=1e-5)


def test_check_memory_passes_when_it_fits_or_is_unknown(monkeypatch):
    check_memory(100, available=memory_needed(100))
    monkeypatch.setattr(ease_module, "available_memory", lambda: None)
    check_memory(10**9)  # unknown: nothing to compare with


def test_lam_must_be_positive():
    with pytest.raises(ConfigError, match="lam must be positive"):
        EASE(lam=0)


def test_restricted_model_saves_and_loads(tmp_path):
    x = _data()
    model = EASE(lam=2.0, max_items=6).fit(sp.csr_matrix(x))
    model.save(tmp_path / "m")
    loaded = EASE.load(tmp_path / "m")
    assert np.array_equal(loaded.items_, model.items_)
    assert np.array_equal(loaded.score(sp.csr_matrix(x)), model.score(sp.csr_matrix(x)))


def test_cli_trains_ease_like_mult_vae(tmp_path, shared_data_dir):
    run = tmp_path / "ease"
    code = main(["train", "--data", "ml-100k", "--data-dir", str(shared_data_dir), "--model",
                 "ease", "--out", str(run), "--quiet", "--json"])
    assert code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    # closed form: one "epoch" that took the whole fit
    assert metrics["epochs"] == 1
    assert metrics["seconds_per_epoch"] == metrics["total_seconds"] > 0
    assert {"truncated_recall@20", "ndcg@100", "peak_rss_mb", "n_users"} <= set(metrics)
    assert metrics["ndcg@100"] > 0.35  # popularity scores about 0.25 on this split
