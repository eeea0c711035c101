"""AutoRec (Sedhain et al. 2015): masked objective, item- and user-based prediction, fold-in,
fallback, clipping, persistence, and a rank-1 matrix it must fit."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.data.interactions import Interactions
from aerec.data.splits import HeldOut
from aerec.models import IAutoRec, UAutoRec
from aerec.models.explicit import masked_squared_error, ridge_fold_in
from aerec.models.sparse import SparseBatch
from explicit_data import assert_resume_is_bit_identical, global_mean_rmse, rank_one

FAST = {"hidden": (20,), "lam": 0.1, "lr": 0.01, "batch_size": 64, "device": "cpu"}


@pytest.fixture(scope="module")
def data():
    return rank_one()


@pytest.fixture(scope="module")
def i_model(data):
    return IAutoRec(epochs=150, **FAST).fit(data[0])


@pytest.fixture(scope="module")
def u_model(data):
    return UAutoRec(epochs=150, **FAST).fit(data[0])


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _weights(model):
    """``(V, W), (mu, b)`` of a one-hidden-layer AutoRec, W as hidden x outputs."""
    net = model.module_
    return ((net.encoder_weights[0].detach().double().numpy(),
             net.decoder_weight.detach().double().numpy().T),
            (net.encoder_biases[0].detach().double().numpy(),
             net.decoder_bias.detach().double().numpy()))


def test_masked_loss_ignores_unobserved_entries():
    x = sp.csr_matrix(np.array([[5, 0, 3], [0, 1, 0]], np.float32))
    batch = SparseBatch.from_csr(x)
    output = torch.tensor([[4.0, 9.0, 3.5], [-7.0, 2.0, 100.0]], requires_grad=True)
    loss = masked_squared_error(output, batch)
    assert loss.item() == pytest.approx(1.0 + 0.25 + 1.0)
    loss.backward()
    expected = np.array([[2 * (4 - 5), 0, 2 * (3.5 - 3)], [0, 2 * (2 - 1), 0]])
    assert np.array_equal(output.grad.numpy(), expected)  # exactly zero off the pattern


def test_loss_is_the_papers_objective_per_rating(data):
    train, _, _ = data
    model = UAutoRec(epochs=0, hidden=(7,), lam=3.0, device="cpu").fit(train)
    model.n_samples_, model.ratings_per_sample_ = train.n_users, train.nnz / train.n_users
    state = type("S", (), {"module": model.module_, "generator": None})()
    batch = SparseBatch.from_csr(train.matrix)
    loss, parts = model._loss(state, batch)
    (v, w), (mu, b) = _weights(model)
    dense = train.matrix.toarray().astype(np.float64)
    recon = _sigmoid(dense @ v + mu) @ w + b
    observed = dense != 0
    sse = ((recon - dense)[observed] ** 2).sum()
    objective = sse + 3.0 / 2 * ((v ** 2).sum() + (w ** 2).sum())
    assert loss.item() == pytest.approx(objective / train.nnz, rel=1e-5)
    assert parts["mse"] == pytest.approx(sse / train.nnz, rel=1e-5)


def test_i_autorec_predicts_h_of_the_item_vector_at_the_user(i_model, data):
    train, _, test = data
    (v, w), (mu, b) = _weights(i_model)
    items = train.matrix.T.toarray().astype(np.float64)  # one row per item, over users
    recon = _sigmoid(items @ v + mu) @ w + b  # items x users
    coo = test.targets.matrix.tocoo()
    expected = recon[coo.col, coo.row]
    got = i_model.predict(test.fold_in, coo.row, coo.col, clip=False)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_i_autorec_uses_the_shown_history_of_a_known_user(i_model, data):
    train, _, _ = data
    shown = train.matrix.tolil()
    shown[3, :] = 0
    shown[3, [0, 1]] = [5.0, 1.0]
    shown = Interactions(shown.tocsr().astype(np.float32), train.user_ids, train.item_ids, None, True)
    rows = np.array([3, 3, 4])
    cols = np.array([5, 6, 5])
    (v, w), (mu, b) = _weights(i_model)
    items = shown.matrix.T.toarray().astype(np.float64)
    recon = _sigmoid(items @ v + mu) @ w + b
    np.testing.assert_allclose(i_model.predict(shown, rows, cols, clip=False),
                               recon[cols, rows], rtol=1e-5, atol=1e-5)


def test_i_autorec_fold_in_minimises_its_objective(i_model, data):
    train, _, _ = data
    history = train.matrix[:6]
    w, c = i_model.fold_in(history)
    codes = i_model.item_codes().double()
    prior = float(i_model.module_.decoder_bias.detach().mean())
    half_lam = 0.5 * i_model.config.lam
    for row in range(6):
        cols = torch.from_numpy(history[row].indices.astype(np.int64))
        r = torch.from_numpy(history[row].data.astype(np.float64))
        wr = w[row].clone().requires_grad_(True)
        cr = c[row].clone().requires_grad_(True)
        objective = ((r - codes[cols] @ wr - cr) ** 2).sum() + half_lam * (wr @ wr) \
            + half_lam * (cr - prior) ** 2
        objective.backward()
        assert wr.grad.abs().max() < 1e-8 and abs(cr.grad.item()) < 1e-8
    # the scores of a new user are that fit
    scores = i_model.score(history).astype(np.float64)
    np.testing.assert_allclose(scores, (w @ codes.T + c[:, None]).numpy(), rtol=1e-5, atol=1e-4)


def test_ridge_fold_in_matches_numpy_least_squares():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(9, 3))
    history = sp.csr_matrix(np.array([[4, 0, 2, 5, 0, 1, 3, 0, 2], [0] * 9], np.float32))
    offsets = rng.normal(size=9)
    w, c = ridge_fold_in(torch.tensor(feats), history, 0.7, 0.2, torch.tensor(offsets))
    cols = history[0].indices
    x = np.hstack([feats[cols], np.ones((len(cols), 1))])
    y = history[0].data - offsets[cols]
    sol = np.linalg.solve(x.T @ x + np.diag([0.7, 0.7, 0.7, 0.2]), x.T @ y)
    np.testing.assert_allclose(w[0].numpy(), sol[:3], rtol=1e-10)
    assert c[0].item() == pytest.approx(sol[3], rel=1e-10)
    assert w[1].abs().sum().item() == 0 and c[1].item() == 0  # no ratings: nothing fitted


def test_u_autorec_new_user_equals_known_user_with_the_same_history(u_model, data):
    train, _, test = data
    coo = test.targets.matrix.tocoo()
    known = u_model.predict(test.fold_in, coo.row, coo.col, clip=False)
    renamed = Interactions(train.matrix, np.array([f"new{u}" for u in train.user_ids]),
                           train.item_ids, None, True)
    as_new = u_model.predict(renamed, coo.row, coo.col, clip=False)
    bare = u_model.score(train.matrix)[coo.row, coo.col]
    assert np.array_equal(known, as_new)
    np.testing.assert_allclose(known, bare, rtol=1e-6)


@pytest.mark.parametrize("which", ["i", "u"])
def test_fits_a_rank_one_matrix(which, i_model, u_model, data):
    train, _, test = data
    model = i_model if which == "i" else u_model
    rmse = model.evaluate_ratings(test)["rmse"]
    assert rmse < 0.35 * global_mean_rmse(train, test)  # about 0.2 vs 0.95 for the mean


def test_the_epoch_kept_has_the_lowest_validation_rmse(data):
    train, val, _ = data
    model = UAutoRec(epochs=12, **FAST).fit(train, val)
    val_rmse = [h["val_rmse"] for h in model.history_]
    assert model.best_epoch_ == int(np.argmin(val_rmse)) + 1
    assert model.evaluate_ratings(val)["rmse"] == pytest.approx(min(val_rmse), abs=1e-6)


def test_fallback_and_clipping():
    m = np.array([[5, 4, 0, 0], [4, 0, 2, 0], [1, 2, 3, 0]], np.float32)
    data = Interactions(sp.csr_matrix(m), np.array(["a", "b", "c"]), np.arange(4).astype(str),
                        None, True)
    model = UAutoRec(epochs=2, hidden=(4,), device="cpu").fit(data)
    assert model.rating_range_ == (1.0, 5.0)
    assert model.global_mean_ == pytest.approx(m[m > 0].mean())
    scores = model.score(sp.csr_matrix(np.array([[5, 0, 0, 0], [0, 0, 0, 0]], np.float32)))
    assert scores[0, 3] == pytest.approx(model.global_mean_)  # item 3 has no training rating
    assert np.all(scores[1] == np.float32(model.global_mean_))  # a user who shows nothing
    # predictions are clipped to the training range in evaluation
    targets = Interactions(sp.csr_matrix(np.array([[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]],
                                                  np.float32)), data.user_ids, data.item_ids,
                           None, True)
    metrics = model.evaluate_ratings(HeldOut(data, targets))
    assert metrics["rmse"] == pytest.approx(model.global_mean_ - 1.0, rel=1e-6)
    model.global_mean_ = 9.0
    assert model.evaluate_ratings(HeldOut(data, targets))["rmse"] == pytest.approx(4.0)


def test_i_autorec_save_load_predicts_bit_identically(i_model, data, tmp_path):
    _, _, test = data
    i_model.save(tmp_path / "m")
    loaded = IAutoRec.load(tmp_path / "m", device="cpu")
    coo = test.targets.matrix.tocoo()
    assert np.array_equal(i_model.predict(test.fold_in, coo.row, coo.col),
                          loaded.predict(test.fold_in, coo.row, coo.col))
    assert np.array_equal(i_model.score(test.fold_in.matrix[:5]), loaded.score(test.fold_in.matrix[:5]))
    assert (loaded.train_matrix_ != i_model.train_matrix_).nnz == 0
    assert list(loaded.user_ids_) == list(i_model.user_ids_)


def test_rprop_full_batch_and_deep_extension_train(data):
    train, val, test = data
    model = IAutoRec(hidden=(16, 8, 16), optimizer="rprop", batch_size=1000, lr=0.01, lam=0.1,
                     epochs=30, device="cpu").fit(train, val)
    net = model.module_
    assert [tuple(w.shape) for w in net.encoder_weights] == [(80, 16), (16, 8), (8, 16)]
    assert tuple(net.decoder_weight.shape) == (80, 16)
    assert model.evaluate_ratings(test)["rmse"] < global_mean_rmse(train, test)


def test_i_autorec_resume_is_bit_identical(data, tmp_path):
    train, val, _ = data
    assert_resume_is_bit_identical(IAutoRec, dict(FAST, input_dropout=0.2), train, val, tmp_path)
