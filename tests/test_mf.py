"""Biased matrix factorisation (Koren et al. 2009), the rating baseline: prediction, objective,
fold-in of new users, a rank-1 matrix, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aerec.data.interactions import Interactions
from aerec.models import BiasedMF
from explicit_data import assert_resume_is_bit_identical, global_mean_rmse, rank_one


@pytest.fixture(scope="module")
def data():
    return rank_one()


@pytest.fixture(scope="module")
def model(data):
    return BiasedMF(factors=2, lam=0.001, lr=0.05, batch_size=512, epochs=40,
                    device="cpu").fit(data[0])


def _params(model):
    net = model.module_
    return (net.user_factors.detach().double().numpy(), net.item_factors.detach().double().numpy(),
            net.user_bias.detach().double().numpy(), net.item_bias.detach().double().numpy(),
            float(net.global_mean))


def test_prediction_is_mu_plus_biases_plus_dot_product(model, data):
    _, _, test = data
    p, q, bu, bi, mu = _params(model)
    assert mu == pytest.approx(data[0].matrix.data.mean(), rel=1e-6)
    coo = test.targets.matrix.tocoo()
    expected = mu + bu[coo.row] + bi[coo.col] + (p[coo.row] * q[coo.col]).sum(1)
    np.testing.assert_allclose(model.predict(test.fold_in, coo.row, coo.col, clip=False), expected,
                               rtol=1e-5)


def test_epoch_loss_is_the_mean_of_the_penalised_squared_errors(data):
    train = data[0]
    model = BiasedMF(factors=3, lam=0.2, batch_size=10**6, epochs=1, lr=1e-12, device="cpu")
    model.fit(train)  # one batch of every rating; with lr 1e-12 the weights barely move
    p, q, bu, bi, mu = _params(model)
    coo = train.matrix.tocoo()
    u, i, r = coo.row, coo.col, coo.data
    err = (mu + bu[u] + bi[i] + (p[u] * q[i]).sum(1) - r) ** 2
    penalty = (p[u] ** 2).sum(1) + (q[i] ** 2).sum(1) + bu[u] ** 2 + bi[i] ** 2
    assert model.history_[0]["loss"] == pytest.approx((err + 0.2 * penalty).mean(), rel=1e-5)
    assert model.history_[0]["mse"] == pytest.approx(err.mean(), rel=1e-5)


def test_fits_a_rank_one_matrix(model, data):
    train, _, test = data
    assert model.evaluate_ratings(test)["rmse"] < 0.05 * global_mean_rmse(train, test)


def test_fold_in_minimises_the_objective_for_the_new_user(model, data):
    history = data[0].matrix[:5]
    p, b = model.fold_in(history)
    net = model.module_
    q = net.item_factors.detach().double()
    offsets = (net.global_mean + net.item_bias).detach().double()
    for row in range(5):
        cols = torch.from_numpy(history[row].indices.astype(np.int64))
        r = torch.from_numpy(history[row].data.astype(np.float64))
        pr = p[row].clone().requires_grad_(True)
        br = b[row].clone().requires_grad_(True)
        n = len(cols)
        objective = ((r - offsets[cols] - br - q[cols] @ pr) ** 2).sum() \
            + model.config.lam * n * (pr @ pr + br ** 2)
        objective.backward()
        assert pr.grad.abs().max() < 1e-8 and abs(br.grad.item()) < 1e-8


def test_a_training_user_folded_in_gets_their_trained_parameters(data):
    # At a minimum of the training objective, the fold-in of a training user's history is that
    # user's own parameters: train to convergence with full batches, then compare.
    train, _, _ = rank_one(n_users=30, n_items=20, observed=0.6)
    model = BiasedMF(factors=2, lam=0.01, lr=0.05, batch_size=10**6, epochs=500,
                     device="cpu").fit(train)
    p, q, bu, bi, mu = _params(model)
    folded_p, folded_b = model.fold_in(train.matrix)
    np.testing.assert_allclose(folded_b.numpy(), bu, atol=1e-3)  # about 1e-4 after 500 steps
    np.testing.assert_allclose(folded_p.numpy(), p, atol=1e-3)
    # and so a new user with a training user's ratings is predicted as that user
    anonymous = Interactions(train.matrix, np.array([f"n{u}" for u in train.user_ids]),
                             train.item_ids, None, True)
    coo = train.matrix.tocoo()
    np.testing.assert_allclose(model.predict(anonymous, coo.row, coo.col, clip=False),
                               model.predict(train, coo.row, coo.col, clip=False), atol=3e-3)


def test_save_load_predicts_bit_identically(model, data, tmp_path):
    _, _, test = data
    model.save(tmp_path / "m")
    loaded = BiasedMF.load(tmp_path / "m", device="cpu")
    coo = test.targets.matrix.tocoo()
    assert np.array_equal(model.predict(test.fold_in, coo.row, coo.col),
                          loaded.predict(test.fold_in, coo.row, coo.col))
    assert np.array_equal(model.score(test.fold_in.matrix[:4]), loaded.score(test.fold_in.matrix[:4]))


def test_resume_is_bit_identical(data, tmp_path):
    train, val, _ = data
    assert_resume_is_bit_identical(BiasedMF, dict(factors=4, batch_size=256, device="cpu"),
                                   train, val, tmp_path)
