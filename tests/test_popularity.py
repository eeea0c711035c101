"""The popularity baseline: hand-counted scores, history ignored, persistence."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from aerec.models.popularity import Popularity

# 4 users x 5 items; users per item: [3, 1, 2, 0, 1]. User 3 rated item 2 with 5 stars, which
# must count as one user, not five.
TRAIN = sp.csr_matrix(np.array([
    [1, 1, 0, 0, 0],
    [1, 0, 1, 0, 0],
    [1, 0, 0, 0, 1],
    [0, 0, 5, 0, 0],
], dtype=np.float32))


def test_scores_are_the_number_of_training_users_per_item():
    model = Popularity().fit(TRAIN)
    scores = model.score(sp.csr_matrix((2, 5), dtype=np.float32))
    np.testing.assert_array_equal(scores, [[3, 1, 2, 0, 1], [3, 1, 2, 0, 1]])


def test_every_history_gets_the_same_ranking_minus_its_own_items():
    model = Popularity().fit(TRAIN)
    history = sp.csr_matrix(np.array([[0, 0, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=np.float32))
    ids, scores = model.recommend(history, n=3)
    # items 1 and 4 tie (one user each); which comes first is up to the top-k
    assert ids[0, :2].tolist() == [0, 2] and set(ids[0, 2:]) <= {1, 4}
    assert ids[1, 0] == 2 and set(ids[1, 1:]) == {1, 4}
    assert scores.tolist() == [[3, 2, 1], [2, 1, 1]]


def test_score_rows_are_independent_copies():
    # evaluation writes -inf into the scores it is given; a broadcast view would leak across rows
    model = Popularity().fit(TRAIN)
    scores = model.score_tensor(sp.csr_matrix((2, 5), dtype=np.float32))
    scores[0, 0] = -1.0
    assert scores[1, 0] == 3.0
    assert model.counts_[0] == 3.0


def test_save_and_load(tmp_path):
    model = Popularity().fit(TRAIN)
    model.save(tmp_path / "pop")
    loaded = Popularity.load(tmp_path / "pop")
    np.testing.assert_array_equal(loaded.counts_.numpy(), [3, 1, 2, 0, 1])
