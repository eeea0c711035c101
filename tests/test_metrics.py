"""Hand-computed cases for aerec.metrics.

Notation in the comments: items are 0..5, ranks count from 1, and the NDCG discount of rank r is
1 / log2(r + 1), so rank 1 -> 1, rank 2 -> 1/log2(3), rank 3 -> 1/log2(4) = 1/2.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.metrics import (
    mae,
    ndcg_at_k,
    recall_at_k,
    rmse,
    summarize,
    top_k,
    truncated_recall_at_k,
)

EXACT = dict(rel=1e-12, abs=1e-12)
L3 = 1 / math.log2(3)  # discount of rank 2


def csr(rows: list[list[int]], n_items: int = 6) -> sp.csr_matrix:
    """A binary CSR with the listed items in each row."""
    dense = np.zeros((len(rows), n_items), np.float32)
    for r, items in enumerate(rows):
        dense[r, items] = 1
    return sp.csr_matrix(dense)


def all_metrics(topk, targets) -> list[np.ndarray]:
    return [recall_at_k(topk, targets), truncated_recall_at_k(topk, targets), ndcg_at_k(topk, targets)]


def assert_rows(actual: np.ndarray, expected: list[float]) -> None:
    assert actual.shape == (len(expected),)
    for a, e in zip(actual, expected):
        if math.isnan(e):
            assert math.isnan(a)
        else:
            assert a == pytest.approx(e, **EXACT)


# Two users, six items.
# user 0 ranks 0 1 2 3 4 5; user 1 ranks 3 1 5 2 4 0.
SCORES = np.array(
    [
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
        [0.1, 0.6, 0.3, 0.9, 0.2, 0.5],
    ]
)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_top_k_orders_by_score(as_tensor):
    scores = torch.from_numpy(SCORES) if as_tensor else SCORES
    top = top_k(scores, 3)
    assert isinstance(top, torch.Tensor) == as_tensor
    np.testing.assert_array_equal(np.asarray(top), [[0, 1, 2], [3, 1, 5]])


def test_fewer_and_more_targets_than_k():
    targets = csr([[1, 4], [0, 2, 3, 5]])
    top = top_k(SCORES, 3)  # [[0, 1, 2], [3, 1, 5]]
    recall, truncated, ndcg = all_metrics(top, targets)
    # user 0: 2 targets (< K=3); top 3 = 0 1 2 hits item 1 at rank 2 -> 1 hit.
    #   recall = 1/2; truncated = 1/min(3, 2) = 1/2
    #   DCG = 1/log2(3); IDCG = 1 + 1/log2(3) (min(2, 3) = 2 ideal ranks)
    # user 1: 4 targets (> K=3); top 3 = 3 1 5 hits item 3 (rank 1) and item 5 (rank 3) -> 2 hits.
    #   recall = 2/4; truncated = 2/min(3, 4) = 2/3
    #   DCG = 1 + 1/2; IDCG = 1 + 1/log2(3) + 1/2 (min(4, 3) = 3 ideal ranks)
    assert_rows(recall, [1 / 2, 2 / 4])
    assert_rows(truncated, [1 / 2, 2 / 3])
    assert_rows(ndcg, [L3 / (1 + L3), 1.5 / (1 + L3 + 0.5)])


def test_no_hits_all_hits_and_no_targets():
    targets = csr([[0, 1, 2], [0, 4], []])
    scores = np.vstack([SCORES, SCORES[0]])
    top = top_k(scores, 3)  # [[0, 1, 2], [3, 1, 5], [0, 1, 2]]
    recall, truncated, ndcg = all_metrics(top, targets)
    # user 0: the top 3 are exactly its 3 targets -> every metric is 1.
    # user 1: targets 0 and 4 are ranked 6th and 5th -> every metric is 0.
    # user 2: no targets -> NaN (excluded from means).
    nan = float("nan")
    assert_rows(recall, [1.0, 0.0, nan])
    assert_rows(truncated, [1.0, 0.0, nan])
    assert_rows(ndcg, [1.0, 0.0, nan])


@pytest.mark.parametrize("as_tensor", [False, True])
def test_excluding_fold_in_items_changes_the_ranking(as_tensor):
    scores = torch.from_numpy(SCORES) if as_tensor else SCORES
    fold_in = csr([[0], [3, 1]])
    top = np.asarray(top_k(scores, 3, exclude=fold_in))
    # user 0 without item 0 ranks 1 2 3; user 1 without items 3 and 1 ranks 5 2 4.
    np.testing.assert_array_equal(top, [[1, 2, 3], [5, 2, 4]])
    assert np.asarray(scores)[0, 0] == 0.9  # the caller's scores are untouched
    targets = csr([[1, 4], [0, 2, 3, 5]])
    recall, truncated, ndcg = all_metrics(top, targets)
    # user 0: item 1 now at rank 1 -> 1 hit; recall 1/2, truncated 1/2,
    #   NDCG = 1 / (1 + 1/log2(3)).
    # user 1: items 5 (rank 1) and 2 (rank 2) -> 2 hits; recall 2/4, truncated 2/3,
    #   NDCG = (1 + 1/log2(3)) / (1 + 1/log2(3) + 1/2).
    assert_rows(recall, [1 / 2, 2 / 4])
    assert_rows(truncated, [1 / 2, 2 / 3])
    assert_rows(ndcg, [1 / (1 + L3), (1 + L3) / (1 + L3 + 0.5)])


@pytest.mark.parametrize("as_tensor", [False, True])
def test_ties_go_to_the_lower_item_index(as_tensor):
    scores = np.array([[0.5, 0.5, 0.9, 0.5, 0.1, 0.5]], np.float32)
    if as_tensor:
        scores = torch.from_numpy(scores)
    # 0.9 first, then the four 0.5s in index order 0 1 3 5, then 0.1.
    np.testing.assert_array_equal(np.asarray(top_k(scores, 3)), [[2, 0, 1]])
    top4 = np.asarray(top_k(scores, 4))
    np.testing.assert_array_equal(top4, [[2, 0, 1, 3]])
    # Target item 3 sits at rank 4: no hit in the top 3; in the top 4, recall 1/1 and
    # NDCG = (1/log2(5)) / 1.
    targets = csr([[3]])
    assert_rows(ndcg_at_k(top4[:, :3], targets), [0.0])
    assert_rows(recall_at_k(top4, targets), [1.0])
    assert_rows(ndcg_at_k(top4, targets), [1 / math.log2(5)])


def test_k_larger_than_the_items_ranks_all_of_them():
    fold_in = csr([[1, 2, 3, 4, 5], []])
    top = top_k(SCORES, 10, exclude=fold_in)
    # Excluded items still fill the list after the others, at -inf, in index order.
    np.testing.assert_array_equal(top, [[0, 1, 2, 3, 4, 5], [3, 1, 5, 2, 4, 0]])


def test_top_k_matches_a_brute_force_sort_on_tied_scores():
    rng = np.random.default_rng(0)
    for seed in range(200):
        batch, n_items = rng.integers(1, 6), rng.integers(1, 12)
        scores = rng.integers(0, 3, size=(batch, n_items)).astype(np.float32)
        fold_in = sp.random(batch, n_items, density=0.3, format="csr", random_state=seed)
        k = int(rng.integers(1, 14))
        masked = np.where(fold_in.toarray() != 0, -np.inf, scores)
        expected = [sorted(range(n_items), key=lambda i: (-masked[r, i], i))[:k] for r in range(batch)]
        np.testing.assert_array_equal(top_k(scores, k, fold_in), expected)
        np.testing.assert_array_equal(top_k(torch.from_numpy(scores), k, fold_in).numpy(), expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_top_k_on_cuda_matches_numpy():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, size=(64, 500)).astype(np.float32)
    fold_in = sp.random(64, 500, density=0.05, format="csr", random_state=1)
    on_gpu = top_k(torch.from_numpy(scores).cuda(), 50, fold_in)
    assert on_gpu.device.type == "cuda"
    np.testing.assert_array_equal(on_gpu.cpu().numpy(), top_k(scores, 50, fold_in))


def test_top_k_rejects_bad_input():
    with pytest.raises(ValueError, match="positive"):
        top_k(SCORES, 0)
    with pytest.raises(ValueError, match="NaN"):
        top_k(np.array([[1.0, np.nan]]), 1)
    with pytest.raises(ValueError, match="NaN"):
        top_k(torch.tensor([[1.0, float("nan")]]), 1)
    with pytest.raises(ValueError, match="shape"):
        top_k(SCORES, 2, exclude=csr([[0]], n_items=5))
    with pytest.raises(ValueError, match="2-D"):
        top_k(SCORES[0], 2)


def test_metrics_reject_misaligned_input():
    with pytest.raises(ValueError, match="rows"):
        recall_at_k(np.array([[0, 1]]), csr([[0], [1]]))
    with pytest.raises(ValueError, match="outside"):
        recall_at_k(np.array([[0, 6]]), csr([[0]]))


def test_summarize_skips_users_without_targets():
    out = summarize({"recall@3": np.array([0.5, 1.0, np.nan]), "empty": np.array([np.nan])})
    # mean of 0.5 and 1.0 = 0.75; std (ddof=0) = 0.25; se = 0.25 / sqrt(2)
    assert out["recall@3"] == pytest.approx(0.75, **EXACT)
    assert out["recall@3_se"] == pytest.approx(0.25 / math.sqrt(2), **EXACT)
    assert math.isnan(out["empty"]) and math.isnan(out["empty_se"])


def test_rmse_and_mae():
    pred, truth = np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 5.0])
    # errors 0, 1, 2: RMSE = sqrt((0 + 1 + 4) / 3), MAE = (0 + 1 + 2) / 3
    assert rmse(pred, truth) == pytest.approx(math.sqrt(5 / 3), **EXACT)
    assert mae(pred, truth) == pytest.approx(1.0, **EXACT)
    with pytest.raises(ValueError, match="equal length"):
        rmse(pred, truth[:2])
    with pytest.raises(ValueError, match="empty"):
        mae(np.zeros(0), np.zeros(0))
