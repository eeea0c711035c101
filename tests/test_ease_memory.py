"""EASE and EDLAE with one dense matrix: the same numbers as a dense solve, the solve in place.

The solve builds the Gram matrix block by block into one buffer, factorises and inverts it there
and writes B in float32 over the buffer's first half (aerec.models.ease). These tests check the
result against Steck's formula written out densely in numpy, on the real data sets too, and that
no second items x items matrix appears.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from aerec.data.datasets import load_dataset
from aerec.data.preprocess import binarize, filter_min_counts
from aerec.data.splits import strong_generalization
from aerec.evaluation import evaluate_ranking
from aerec.models import EASE, EDLAE
from aerec.models import ease as ease_module


def _reference(x: sp.spmatrix, penalty: float | np.ndarray) -> np.ndarray:
    """B = I - P diag(1 / diag(P)), P = (X^T X + diag(penalty))^-1, densely in float64."""
    dense = x.toarray().astype(np.float64) != 0
    g = dense.T.astype(np.float64) @ dense
    p = np.linalg.inv(g + np.diag(np.broadcast_to(penalty, len(g))))
    b = np.eye(len(g)) - p / np.diag(p)[np.newaxis, :]
    np.fill_diagonal(b, 0.0)
    return b


def _sparse(n_users: int, n_items: int, seed: int, density: float = 0.08) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    popularity = np.linspace(1.5, 0.1, n_items)  # unequal items: EDLAE's penalty varies
    x = rng.random((n_users, n_items)) < density * popularity
    x[:, 0] = True
    return sp.csr_matrix(x.astype(np.float32))


# -- the same numbers on the real data sets -------------------------------------------------------
#: NDCG@100 on the test users of each data set's strong-generalization split (the CLI's defaults:
#: ratings > 3.5, users with >= 5, 10 % held out each, seed 98765), measured with the previous
#: code (three dense matrices, torch's Cholesky inverse) before this one replaced it.
BEFORE = {
    ("ml-100k", "ease"): 0.4637, ("ml-100k", "edlae"): 0.4736,
    ("ml-latest-small", "ease"): 0.3485, ("ml-latest-small", "edlae"): 0.3627,
}


@pytest.fixture(scope="module")
def splits(shared_data_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    out = {}
    for name in ("ml-100k", "ml-latest-small"):
        data = load_dataset(name, data_dir=shared_data_dir, cache_dir=cache, progress=False)
        out[name] = strong_generalization(filter_min_counts(binarize(data, 3.5), min_user=5), 0.1)
    return out


@pytest.mark.parametrize("name", ["ml-100k", "ml-latest-small"])
@pytest.mark.parametrize("cls", [EASE, EDLAE])
def test_same_weights_and_ndcg_as_a_dense_solve_on_real_data(splits, name, cls):
    split = splits[name]
    train = split.train.matrix
    model = cls().fit(train)
    counts = np.asarray((train != 0).sum(axis=0)).ravel().astype(np.float64)
    reference = _reference(train, model._penalty(counts))
    b = model.weights_.numpy()
    assert b.dtype == np.float32 and b.shape == reference.shape
    assert np.abs(b - reference).max() <= 1e-6 * np.abs(reference).max()
    fold_in, targets = split.test.fold_in.matrix, split.test.targets.matrix
    ndcg = evaluate_ranking(model.score_tensor, fold_in, targets)["ndcg@100"]
    ref_ndcg = evaluate_ranking(lambda batch: (batch != 0).astype(np.float64) @ reference,
                                fold_in, targets)["ndcg@100"]
    assert abs(ndcg - ref_ndcg) < 1e-4
    assert round(ndcg, 4) == BEFORE[(name, cls.name)]


# -- the solve ----------------------------------------------------------------------------------
@pytest.mark.parametrize("block_bytes, min_blocks", [(8 * 50, 8), (8 * 50 * 7, 8), (2**27, 1)],
                         ids=["1-row", "7-rows", "one-block"])
@pytest.mark.parametrize("cls, params", [(EASE, {"lam": 3.0}), (EDLAE, {"lam": 2.0, "dropout": 0.5})])
def test_blocks_of_any_size_give_the_dense_solution(monkeypatch, block_bytes, min_blocks, cls,
                                                    params):
    # 50 items in blocks of 7 rows: the last block is short, and block 1's float32 rows land
    # on float64 rows that block 0 read: the order of reads and writes is what is tested.
    monkeypatch.setattr(ease_module, "BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(ease_module, "MIN_BLOCKS", min_blocks)
    assert ease_module.block_rows(50) == {(400, 8): 1, (2800, 8): 7}.get((block_bytes, min_blocks), 50)
    x = _sparse(120, 50, seed=1)
    model = cls(**params).fit(x)
    counts = np.asarray((x != 0).sum(axis=0)).ravel().astype(np.float64)
    np.testing.assert_allclose(model.weights_.numpy(), _reference(x, model._penalty(counts)),
                               atol=1e-6)


def test_the_gram_matrix_is_built_block_by_block_into_its_lower_triangle(monkeypatch):
    monkeypatch.setattr(ease_module, "BLOCK_BYTES", 8 * 40 * 6)
    x = _sparse(90, 40, seed=2)
    gram = ease_module.gram_matrix(x)
    full = (x.T @ x).toarray()
    assert gram.dtype == np.float64 and gram.flags.c_contiguous
    np.testing.assert_array_equal(np.tril(gram), np.tril(full))
    rows = ease_module.block_rows(40)
    assert rows == 5  # 40 / MIN_BLOCKS: fewer than the 6 that BLOCK_BYTES allows
    # above the diagonal blocks nothing is written
    block_end = (np.arange(40) // rows + 1) * rows
    above = np.arange(40)[np.newaxis, :] >= block_end[:, np.newaxis]
    assert above.sum() > 0 and np.all(gram[above] == 0.0)


def test_b_is_written_over_the_gram_matrix_memory():
    x = _sparse(200, 80, seed=3)
    gram = ease_module.gram_matrix(x)
    b = ease_module.ease_weights(gram, 4.0)
    assert b.dtype == np.float32 and b.flags.c_contiguous
    assert b.ctypes.data == gram.ctypes.data  # the first half of the one buffer
    np.testing.assert_allclose(b, _reference(x, 4.0), atol=1e-6)


def test_a_full_symmetric_array_not_on_a_map_will_do():
    x = _sparse(150, 60, seed=4)
    full = np.ascontiguousarray((x.T @ x).toarray(), dtype=np.float64)
    b = ease_module.ease_weights(full, 2.5)
    np.testing.assert_allclose(b, _reference(x, 2.5), atol=1e-6)


def test_scipy_fallback_gives_the_same_weights_in_place(monkeypatch):
    x = _sparse(150, 60, seed=5)
    mkl = ease_module.ease_weights(ease_module.gram_matrix(x), 2.0).copy()
    monkeypatch.setattr(ease_module, "_mkl", lambda: None)
    gram = ease_module.gram_matrix(x)
    b = ease_module.ease_weights(gram, 2.0)
    assert b.ctypes.data == gram.ctypes.data
    np.testing.assert_allclose(b, mkl, atol=1e-7)


def test_not_positive_definite_is_a_typed_error():
    from aerec.errors import TrainingDivergedError

    gram = np.ascontiguousarray(-np.eye(5))
    with pytest.raises(TrainingDivergedError, match="not positive definite"):
        ease_module.ease_weights(gram, 0.5)


def test_a_float32_solve_is_close_to_the_float64_one():
    # Half the memory: the whole solve in float32 (gram_matrix(dtype=float32)); not what EASE
    # fits with, measured in docs/ease.md.
    x = _sparse(400, 120, seed=6)
    b64 = ease_module.ease_weights(ease_module.gram_matrix(x), 10.0)
    b32 = ease_module.ease_weights(ease_module.gram_matrix(x, dtype=np.float32), 10.0)
    assert np.abs(b32 - b64).max() <= 1e-4 * np.abs(b64).max()


# -- memory -------------------------------------------------------------------------------------
def _status(field: str) -> float:
    """A VmHWM / VmRSS figure of this process, in bytes."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _resident_bytes(address: int, length: int) -> int:
    """Bytes of ``[address, address + length)`` (page-aligned start) in memory (mincore)."""
    import ctypes

    page = os.sysconf("SC_PAGE_SIZE")
    pages = -(-length // page)
    vec = (ctypes.c_ubyte * pages)()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    if libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(length), vec) != 0:
        raise OSError(ctypes.get_errno(), "mincore")
    return sum(v & 1 for v in vec) * page


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_no_second_matrix_appears_and_half_the_buffer_is_handed_back(monkeypatch):
    try:
        with open("/proc/self/clear_refs", "w") as f:  # "5": reset the peak (VmHWM) to now
            f.write("5")
    except OSError:
        pytest.skip("cannot reset the peak resident memory")
    n = 2500
    matrix = n * n * 8  # 50 MB
    monkeypatch.setattr(ease_module, "BLOCK_BYTES", 2**20)  # workspace blocks of 1 MiB
    rng = np.random.default_rng(7)
    users = np.concatenate([rng.integers(0, 3 * n, 60_000), np.arange(n)])  # every item seen
    items = np.concatenate([np.minimum(rng.zipf(1.5, 60_000) - 1, n - 1), np.arange(n)])
    x = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(3 * n, n))
    x.data[:] = 1.0  # duplicates were summed
    # LAPACK's and torch's own buffers, allocated once per process: not the solve's
    ease_module.ease_weights(ease_module.gram_matrix(_sparse(300, 200, seed=8)), 1.0)
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    gram = ease_module.gram_matrix(x)
    b = ease_module.ease_weights(gram, 5.0)
    peak = _status("VmHWM") - before
    # one matrix and a few 1 MiB blocks; a float32 B beside it would be 1.5 matrices
    assert peak < 1.15 * matrix, (peak, matrix)
    # B in float32 is the buffer's first half; the second half went back to the OS
    page = os.sysconf("SC_PAGE_SIZE")
    assert _resident_bytes(b.ctypes.data, n * n * 4) == -(-n * n * 4 // page) * page
    assert _resident_bytes(b.ctypes.data, n * n * 8) == -(-n * n * 4 // page) * page
    np.testing.assert_allclose(b[:5], _reference(x, 5.0)[:5], atol=1e-6)
