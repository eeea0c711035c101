"""aerec.evaluation on hand-computed cases, and its invariance to batching and to the array type."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.data.interactions import Interactions
from aerec.evaluation import evaluate_ranking, evaluate_ratings

EXACT = dict(rel=1e-12, abs=1e-12)
L3 = 1 / math.log2(3)  # NDCG discount of rank 2; rank 1 -> 1, rank 3 -> 1/2

# A popularity scorer: every user gets the same scores, so only the excluded fold-in items make
# the rankings differ. Unexcluded ranking: 0 1 2 3 4 5.
POPULARITY = np.array([0.6, 0.5, 0.4, 0.3, 0.2, 0.1], np.float32)


def popularity(batch: sp.csr_matrix) -> np.ndarray:
    return np.tile(POPULARITY, (batch.shape[0], 1))


def csr(rows: list[list[int]], n_items: int = 6, values: list[list[float]] | None = None):
    dense = np.zeros((len(rows), n_items), np.float32)
    for r, items in enumerate(rows):
        dense[r, items] = 1 if values is None else values[r]
    return sp.csr_matrix(dense)


FOLD_IN = csr([[0], [1, 2], [3], []])
TARGETS = csr([[1, 3], [5], [], [0, 2, 4, 5]])

# Per user, per K, (recall, truncated recall, NDCG), worked out by hand:
# user 0: ranking without item 0 is 1 2 3 4 5; targets {1, 3}.
#   K=1: [1] -> 1 hit: recall 1/2, truncated 1/min(1, 2) = 1, NDCG 1/1.
#   K=3: [1 2 3] -> hits at ranks 1, 3: recall 2/2, truncated 2/2,
#        NDCG (1 + 1/2) / (1 + 1/log2(3)).
# user 1: ranking without items 1, 2 is 0 3 4 5; targets {5}.
#   K=1: [0], K=3: [0 3 4] -> no hit: all 0.
# user 2: no targets -> skipped, not counted.
# user 3: nothing excluded, ranking 0 1 2 3 4 5; targets {0, 2, 4, 5}.
#   K=1: [0] -> 1 hit: recall 1/4, truncated 1/1, NDCG 1.
#   K=3: [0 1 2] -> hits at ranks 1, 3: recall 2/4, truncated 2/min(3, 4) = 2/3,
#        NDCG (1 + 1/2) / (1 + 1/log2(3) + 1/2).
EXPECTED_PER_USER = {
    "recall@1": [1 / 2, 0.0, 1 / 4],
    "truncated_recall@1": [1.0, 0.0, 1.0],
    "ndcg@1": [1.0, 0.0, 1.0],
    "recall@3": [1.0, 0.0, 2 / 4],
    "truncated_recall@3": [1.0, 0.0, 2 / 3],
    "ndcg@3": [1.5 / (1 + L3), 0.0, 1.5 / (1 + L3 + 0.5)],
}


def test_ranking_matches_hand_computed_metrics():
    result = evaluate_ranking(popularity, FOLD_IN, TARGETS, ks=(1, 3))
    assert result["n_users"] == 3
    for name, values in EXPECTED_PER_USER.items():
        values = np.array(values)
        mean = values.sum() / 3
        se = math.sqrt(((values - mean) ** 2).sum() / 3) / math.sqrt(3)  # std with ddof=0
        assert result[name] == pytest.approx(mean, **EXACT), name
        assert result[f"{name}_se"] == pytest.approx(se, **EXACT), name
    assert set(result) == {"n_users"} | set(EXPECTED_PER_USER) | {f"{n}_se" for n in EXPECTED_PER_USER}


def test_ranking_accepts_interactions():
    def wrap(m: sp.csr_matrix) -> Interactions:
        return Interactions(m, np.array(["a", "b", "c", "d"]), np.arange(6).astype(str), explicit=False)

    as_csr = evaluate_ranking(popularity, FOLD_IN, TARGETS, ks=(1, 3))
    assert evaluate_ranking(popularity, wrap(FOLD_IN), wrap(TARGETS), ks=(1, 3)) == as_csr


def test_users_without_targets_are_not_scored_and_batches_are_bounded():
    seen = []

    def spy(batch):
        seen.append(batch.shape[0])
        return popularity(batch)

    evaluate_ranking(spy, FOLD_IN, TARGETS, ks=(1,), batch_size=2)
    assert seen == [2, 1]  # 3 users with targets, in batches of at most 2


def test_score_fn_may_return_read_only_or_shared_views():
    shared = torch.from_numpy(POPULARITY.copy())
    expected = evaluate_ranking(popularity, FOLD_IN, TARGETS, ks=(1, 3))
    broadcast = lambda b: np.broadcast_to(POPULARITY, (b.shape[0], 6))  # noqa: E731
    expanded = lambda b: shared.expand(b.shape[0], 6)  # noqa: E731
    assert evaluate_ranking(broadcast, FOLD_IN, TARGETS, ks=(1, 3)) == expected
    assert evaluate_ranking(expanded, FOLD_IN, TARGETS, ks=(1, 3)) == expected
    assert torch.equal(shared, torch.from_numpy(POPULARITY))  # the exclusions were not written back


def random_case(seed: int = 0, n_users: int = 57, n_items: int = 40):
    rng = np.random.default_rng(seed)
    fold_in = sp.random(n_users, n_items, density=0.15, format="csr", random_state=seed)
    targets = sp.random(n_users, n_items, density=0.1, format="csr", random_state=seed + 1)
    fold_in.data[:], targets.data[:] = 1, 1
    # Small integer weights make many tied scores, so tie-breaking is exercised too.
    weights = rng.integers(0, 3, size=(n_items, n_items)).astype(np.float32)
    return fold_in, targets, weights


def test_batching_and_array_type_do_not_change_the_result():
    fold_in, targets, weights = random_case()

    def numpy_scores(batch):
        return np.asarray(batch @ weights, np.float32)

    def torch_scores(batch):
        return torch.from_numpy(numpy_scores(batch))

    ks = (1, 5, 10, 100)
    reference = evaluate_ranking(numpy_scores, fold_in, targets, ks=ks, batch_size=1000)
    assert reference["n_users"] == int((np.diff(targets.indptr) > 0).sum())
    for score_fn in (numpy_scores, torch_scores):
        for batch_size in (1, 7, 1000):
            result = evaluate_ranking(score_fn, fold_in, targets, ks=ks, batch_size=batch_size)
            assert result == reference


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_scores_give_the_same_result():
    fold_in, targets, weights = random_case(1)

    def numpy_scores(batch):
        return np.asarray(batch @ weights, np.float32)

    def cuda_scores(batch):
        return torch.from_numpy(numpy_scores(batch)).cuda()

    expected = evaluate_ranking(numpy_scores, fold_in, targets, ks=(5, 20))
    assert evaluate_ranking(cuda_scores, fold_in, targets, ks=(5, 20), batch_size=10) == expected


def test_ranking_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        evaluate_ranking(popularity, FOLD_IN, TARGETS[:3])
    with pytest.raises(ValueError, match="ks"):
        evaluate_ranking(popularity, FOLD_IN, TARGETS, ks=(0,))
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_ranking(popularity, FOLD_IN, TARGETS, batch_size=0)
    with pytest.raises(ValueError, match="score_fn returned shape"):
        evaluate_ranking(lambda b: np.zeros((b.shape[0], 5)), FOLD_IN, TARGETS)
    with pytest.raises(TypeError, match="Interactions"):
        evaluate_ranking(popularity, FOLD_IN.toarray(), TARGETS)


def user_mean(fold_in: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Predict each target with its user's mean fold-in rating."""
    sums = np.asarray(fold_in.sum(axis=1)).ravel()
    counts = np.diff(fold_in.indptr)
    return sums[rows] / counts[rows]


def test_ratings_match_hand_computed_errors():
    fold_in = csr([[0, 1], [2]], values=[[4.0, 2.0], [5.0]])  # user means 3 and 5
    targets = csr([[3, 4], [0]], values=[[3.0, 5.0], [1.0]])
    # predictions 3, 3, 5 for truths 3, 5, 1: errors 0, 2, 4
    # RMSE = sqrt((0 + 4 + 16) / 3), MAE = (0 + 2 + 4) / 3
    result = evaluate_ratings(user_mean, fold_in, targets)
    assert result["rmse"] == pytest.approx(math.sqrt(20 / 3), **EXACT)
    assert result["mae"] == pytest.approx(2.0, **EXACT)
    assert result["n_ratings"] == 3


def test_ratings_are_clipped_to_the_scale():
    fold_in = csr([[0]], values=[[4.0]])
    targets = csr([[1]], values=[[5.0]])
    too_high = lambda f, r, c: torch.tensor([7.5])  # noqa: E731
    assert evaluate_ratings(too_high, fold_in, targets)["rmse"] == pytest.approx(0.0, **EXACT)
    assert evaluate_ratings(too_high, fold_in, targets, clip=None)["mae"] == pytest.approx(2.5, **EXACT)
    with pytest.raises(ValueError, match="predictions"):
        evaluate_ratings(lambda f, r, c: np.zeros(2), fold_in, targets)
