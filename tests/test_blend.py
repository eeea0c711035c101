"""Blends: the standardised weighted sum, the weight search against independent evaluations,
persistence of members with their own hyperparameters, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from aerec.data.interactions import Interactions
from aerec.data.splits import HeldOut
from aerec.errors import ConfigError, NotFittedError
from aerec.evaluation import evaluate_ranking
from aerec.models import EASE, Blend, IAutoRec, MultDAE, Popularity
from aerec.models.blend import simplex_grid, standardise

N_ITEMS = 30


def _users(n: int, seed: int) -> sp.csr_matrix:
    """Two tastes (items 0-14 and 15-29), with item popularity falling within each half, so
    that popularity is a real but weaker signal than the taste EASE learns."""
    rng = np.random.default_rng(seed)
    half = rng.integers(0, 2, n)
    p = np.tile(np.linspace(0.8, 0.15, N_ITEMS // 2), 2)
    liked = (np.arange(N_ITEMS)[None, :] < N_ITEMS // 2) == (half[:, None] == 0)
    x = (rng.random((n, N_ITEMS)) < p * np.where(liked, 1.0, 0.08)).astype(np.float32)
    x[x.sum(1) == 0, 0] = 1.0
    return sp.csr_matrix(x)


def _heldout(m: sp.csr_matrix, seed: int) -> HeldOut:
    rng = np.random.default_rng(seed)
    coo = m.tocoo()
    is_target = rng.random(coo.nnz) < 0.3
    parts = []
    for keep in (~is_target, is_target):
        part = sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=m.shape,
                             dtype=np.float32)
        parts.append(Interactions(part, np.arange(m.shape[0]).astype(str),
                                  np.arange(N_ITEMS).astype(str), None, False))
    return HeldOut(*parts)


@pytest.fixture(scope="module")
def members():
    train = _users(200, 0)
    return EASE(lam=5.0).fit(train), Popularity().fit(train)


def test_standardise_by_hand():
    z = standardise(_tensor([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0], [-np.inf, 0.0, 2.0]])).numpy()
    np.testing.assert_allclose(z[0], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)], rtol=1e-6)
    assert np.array_equal(z[1], [0.0, 0.0, 0.0])  # equal scores: no ranking, no NaN
    assert z[2, 0] == -np.inf  # an item a member never recommends stays out
    np.testing.assert_allclose(z[2, 1:], [-1.0, 1.0], rtol=1e-6)


def test_the_simplex_grid():
    grid = simplex_grid(3, 0.1)
    assert len(grid) == 66  # C(10 + 2, 2)
    assert all(np.isclose(w.sum(), 1.0) and w.min() >= 0 for w in grid)
    assert len({tuple(np.round(w, 9)) for w in grid}) == 66
    assert [w.tolist() for w in simplex_grid(2, 0.5)] == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]


def test_scores_are_the_weighted_sum_of_standardised_member_scores(members):
    ease, pop = members
    blend = Blend.of([ease, pop], weights=(0.3, 0.7))
    users = _users(7, 1)

    def z(s):
        s = s.astype(np.float64)
        return (s - s.mean(1, keepdims=True)) / s.std(1, keepdims=True)

    expected = 0.3 * z(ease.score(users)) + 0.7 * z(pop.score(users))
    np.testing.assert_allclose(blend.score(users), expected, rtol=1e-5, atol=1e-5)


def test_a_blend_with_all_weight_on_one_member_ranks_as_that_member(members):
    ease, pop = members
    users = _users(20, 2)
    ids, _ = Blend.of([ease, pop], weights=(1.0, 0.0)).recommend(users, n=10)
    assert np.array_equal(ids, ease.recommend(users, n=10)[0])


def test_the_chosen_weights_are_the_best_of_independent_evaluations(members):
    ease, pop = members
    validation = _heldout(_users(60, 3), seed=4)
    blend = Blend.of([ease, pop], validation=validation, weight_step=0.25)
    fold_in, targets = validation.fold_in.matrix, validation.targets.matrix
    by_hand = {}
    for w in simplex_grid(2, 0.25):
        fixed = Blend.of([ease, pop], weights=tuple(w))
        metrics = evaluate_ranking(fixed.score_tensor, fold_in, targets, ks=(100,))
        by_hand[tuple(w)] = metrics["ndcg@100"]
    searched = {tuple(r["weights"]): r["ndcg@100"] for r in blend.weight_search_}
    assert searched.keys() == by_hand.keys()
    for w, value in by_hand.items():
        assert searched[w] == pytest.approx(value, abs=1e-12)
    assert tuple(blend.weights_) == max(by_hand, key=by_hand.get)
    # The taste EASE learned beats popularity on these users: the search must not pick pure
    # popularity, and EASE alone must beat popularity alone.
    assert by_hand[(1.0, 0.0)] > by_hand[(0.0, 1.0)] + 0.05
    assert blend.weights_[0] > 0


def test_without_validation_the_weights_are_equal(members):
    assert Blend.of(list(members)).weights_.tolist() == [0.5, 0.5]


def test_fit_trains_the_members_and_searches_on_validation():
    train, validation = _users(150, 5), _heldout(_users(40, 6), seed=7)
    blend = Blend(members=("ease", "mult-dae"), device="cpu").fit(train, validation)
    assert [type(m) for m in blend.members_] == [EASE, MultDAE]
    assert len(blend.members_[1].history_) == MultDAE().config.epochs  # trained with validation
    assert len(blend.weight_search_) == 11
    best = max(blend.weight_search_, key=lambda r: r["ndcg@100"])
    assert blend.weights_.tolist() == best["weights"]


def test_members_keep_their_hyperparameters_through_save_and_load(members, tmp_path):
    ease, pop = members
    blend = Blend.of([ease, pop], weights=(0.6, 0.4))
    blend.save(tmp_path / "b")
    loaded = Blend.load(tmp_path / "b")
    assert loaded.members_[0].get_params() == {"lam": 5.0, "max_items": None,
                                                  "precision": "auto"}
    assert loaded.weights_.tolist() == [0.6, 0.4]
    users = _users(9, 8)
    assert np.array_equal(loaded.score(users), blend.score(users))


def test_items_a_member_never_recommends_stay_out():
    train = _users(200, 9)
    restricted = EASE(lam=5.0, max_items=10).fit(train)
    blend = Blend.of([restricted, Popularity().fit(train)], weights=(0.5, 0.5))
    scores = blend.score(_users(5, 10))
    inside = np.zeros(N_ITEMS, bool)
    inside[restricted.items_] = True
    assert np.isneginf(scores[:, ~inside]).all()
    assert np.isfinite(scores[:, inside]).all()


@pytest.mark.parametrize("params, message", [
    ({"members": ("ease",)}, "at least two members"),
    ({"members": ("ease", "blend")}, "cannot be a member"),
    ({"weights": (1.0,)}, "1 weights for 2 members"),
    ({"weights": (0.7, 0.7)}, "sum to 1"),
    ({"weights": (1.5, -0.5)}, "non-negative"),
    ({"weight_step": 0.3}, "whole steps"),
    ({"weight_step": 0.0}, "whole steps"),
])
def test_bad_hyperparameters_are_config_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        Blend(**params)


def test_rating_models_and_unknown_names_are_refused():
    with pytest.raises(ConfigError, match="predicts ratings"):
        Blend(members=("ease", "i-autorec")).fit(_users(20, 11))
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        Blend(members=("ease", "nope")).fit(_users(20, 11))
    assert not IAutoRec.implicit
    ratings = IAutoRec(epochs=1, device="cpu").fit(_users(20, 12))
    with pytest.raises(ConfigError, match="predicts ratings"):
        Blend.of([ratings, Popularity().fit(_users(20, 12))])


def test_blending_needs_fitted_models_over_the_same_items(members):
    ease, _ = members
    with pytest.raises(NotFittedError):
        Blend.of([ease, Popularity()])
    other = Popularity().fit(sp.csr_matrix(np.ones((3, N_ITEMS + 1), np.float32)))
    with pytest.raises(ConfigError, match="different items"):
        Blend.of([ease, other])


def _tensor(rows):
    import torch

    return torch.tensor(rows, dtype=torch.float32)


def test_the_cli_trains_evaluates_and_recommends_a_blend(tmp_path, shared_data_dir, capsys):
    import json

    from aerec.cli import main

    run = tmp_path / "blend"
    assert main(["train", "--data", "ml-100k", "--data-dir", str(shared_data_dir), "--model",
                 "blend", "--out", str(run), "--set", "members=ease,popularity", "--quiet",
                 "--json"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    model = Blend.load(run / "model")
    assert [m.name for m in model.members_] == ["ease", "popularity"]
    # EASE alone scores about 0.46 on this split and popularity about 0.25: validation must
    # not have chosen popularity alone.
    assert model.weights_[0] > 0 and metrics["ndcg@100"] > 0.4
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ndcg@100"] == metrics["ndcg@100"]
    assert main(["recommend", str(run), "--items", "50,181", "-n", "5", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["recommendations"]) == 5
