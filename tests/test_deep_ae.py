"""The deep autoencoder (Kuchaiev & Ginsburg 2017): architecture, code-layer dropout, masked MSE,
dense re-feeding (what it changes and what it does not), fold-in, a rank-1 matrix."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.data.interactions import Interactions
from aerec.training import Trainer
from aerec.models import DeepAutoencoder
from aerec.models.sparse import SparseBatch
from aerec.models.torch_base import TrainState
from aerec.persistence import load_state
from explicit_data import assert_resume_is_bit_identical, global_mean_rmse, rank_one


@pytest.fixture(scope="module")
def data():
    return rank_one()


def _tiny_model(**params):
    """A fitted-shape model on 3 users x 4 items, with hand-set weights."""
    x = np.array([[5, 0, 3, 0], [0, 4, 0, 1], [2, 0, 0, 5]], np.float32)
    data = Interactions(sp.csr_matrix(x), np.array(["a", "b", "c"]), np.arange(4).astype(str),
                        None, True)
    model = DeepAutoencoder(epochs=0, device="cpu", **params).fit(data)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.module_.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) * 0.6 - 0.3)
    return model, data


def _state(model, seed=0):
    return TrainState(model.module_, model._make_optimizers(model.module_),
                      torch.Generator().manual_seed(seed), np.random.default_rng(seed),
                      torch.device("cpu"))


def _forward_numpy(model, x, kind="tanh"):
    """The network by hand: mirrored layers, activation everywhere (the last layer too)."""
    net = model.module_
    act = {"tanh": np.tanh, "identity": lambda v: v}[kind]
    enc = [(w.detach().double().numpy(), b.detach().double().numpy())
           for w, b in zip(net.encoder_weights, net.encoder_biases)]
    if net.constrained:
        dec_w = [w for w, _ in reversed(enc)]
        dec_w = [w.T for w in dec_w]
    else:
        dec_w = [w.detach().double().numpy() for w in net.decoder_weights]
    dec = list(zip(dec_w, [b.detach().double().numpy() for b in net.decoder_biases]))
    h = np.asarray(x, np.float64)
    for w, b in enc:
        h = act(h @ w + b)
    for i, (w, b) in enumerate(dec):
        h = h @ w + b
        if i < len(dec) - 1 or net.last_layer_activation:
            h = act(h)
    return h


@pytest.mark.parametrize("constrained", [False, True])
def test_mirrored_layers_and_tied_weights(constrained):
    model, data = _tiny_model(hidden=(3, 2), activation="tanh", constrained=constrained,
                              dropout=0.0)
    net = model.module_
    assert [tuple(w.shape) for w in net.encoder_weights] == [(4, 3), (3, 2)]
    assert [tuple(b.shape) for b in net.decoder_biases] == [(3,), (4,)]
    assert len(net.decoder_weights) == (0 if constrained else 2)
    np.testing.assert_allclose(model.score(data.matrix),
                               _forward_numpy(model, data.matrix.toarray()), rtol=1e-5, atol=1e-6)


def test_dropout_acts_on_the_code_layer_only():
    model, data = _tiny_model(hidden=(3, 2), activation="tanh", dropout=0.5)
    state = _state(model)
    batch = SparseBatch.from_csr(data.matrix)
    net = model.module_
    codes = net.encode((batch, batch.values))
    dropped = model._code_dropout(codes, state)
    kept = dropped != 0
    assert 0 < kept.sum() < kept.numel()
    torch.testing.assert_close(dropped[kept], codes[kept] * 2.0)  # inverted dropout, p = 0.5
    # evaluation: no dropout anywhere, the output is the plain forward pass
    np.testing.assert_allclose(model.score(data.matrix),
                               _forward_numpy(model, data.matrix.toarray()), rtol=1e-5, atol=1e-6)


def test_masked_mse_is_the_mean_over_observed_ratings():
    model, data = _tiny_model(hidden=(3,), activation="tanh", dropout=0.0)
    loss, output = model._sparse_loss(_state(model), SparseBatch.from_csr(data.matrix))
    x = data.matrix.toarray()
    out = _forward_numpy(model, x)
    observed = x != 0
    assert loss.item() == pytest.approx(((out - x)[observed] ** 2).mean(), rel=1e-5)
    np.testing.assert_allclose(output.detach().numpy(), out, rtol=1e-5, atol=1e-6)


def test_refeed_loss_by_hand():
    model, data = _tiny_model(hidden=(2,), activation="tanh", dropout=0.0)
    y = torch.from_numpy(_forward_numpy(model, data.matrix.toarray())).float()
    y[0, 1] = 0.0  # an exact zero is not a target, as in the authors' MSEloss
    loss = model.refeed_loss(_state(model), y)
    fy = _forward_numpy(model, y.numpy().astype(np.float64))
    mask = y.numpy() != 0
    assert loss.item() == pytest.approx(((fy - y.numpy())[mask] ** 2).sum() / mask.sum(), rel=1e-5)


def _one_epoch(refeed: bool, captured: dict | None = None):
    train, _, _ = rank_one(n_users=20, n_items=12)
    model = DeepAutoencoder(hidden=(6, 4), dropout=0.0, refeed=refeed, optimizer="momentum",
                            momentum=0.0, lr=0.05, batch_size=100, epochs=1, device="cpu")
    if captured is not None:
        original = model.refeed_loss

        def spy(state, y):
            captured["weights"] = copy.deepcopy(state.module.state_dict())
            captured["y"] = y.clone()
            captured["requires_grad"] = y.requires_grad
            loss = original(state, y)
            # the SGD step the refeed should take, computed independently
            grads = torch.autograd.grad(loss, list(state.module.parameters()), retain_graph=True)
            captured["expected"] = {name: p.detach() - 0.05 * g for (name, p), g in
                                    zip(state.module.named_parameters(), grads)}
            return loss

        model.refeed_loss = spy
    return model.fit(train), train


def test_refeed_leaves_the_first_step_alone_and_takes_a_second_step_on_f_of_x():
    plain, train = _one_epoch(refeed=False)
    captured: dict = {}
    refed, _ = _one_epoch(refeed=True, captured=captured)
    # the first step (on the sparse input) is bit-identical with and without re-feeding
    for name, value in plain.module_.state_dict().items():
        assert torch.equal(captured["weights"][name], value), name
    # y is the first step's output f(x), detached: dense, input and target of the second step
    first = DeepAutoencoder(hidden=(6, 4), dropout=0.0, epochs=0, device="cpu").fit(train)
    batch = SparseBatch.from_csr(train.matrix)
    with torch.no_grad():
        f_of_x = first.module_.decode(first.module_.encode((batch, batch.values)))
    torch.testing.assert_close(captured["y"], f_of_x, rtol=1e-6, atol=1e-6)
    assert not captured["requires_grad"] and (captured["y"] != 0).all()
    # the second step is one SGD step on the refeed loss, and nothing else moves
    for name, value in refed.module_.state_dict().items():
        torch.testing.assert_close(value, captured["expected"][name], rtol=1e-6, atol=1e-7)
    assert set(refed.history_[0]) - set(plain.history_[0]) == {"refeed_loss"}
    assert plain.history_[0]["loss"] == refed.history_[0]["loss"]


def test_refeed_doubles_the_updates(tmp_path):
    train, _, _ = rank_one(n_users=20, n_items=12)
    for refeed, per_batch in ((False, 1), (True, 2)):
        model = DeepAutoencoder(hidden=(6,), refeed=refeed, batch_size=8, epochs=2, device="cpu")
        Trainer(checkpoint=tmp_path / f"{refeed}.ckpt").fit(model, train)
        state, _ = load_state(tmp_path / f"{refeed}.ckpt")
        assert state["update_count"] == 2 * 3 * per_batch  # 20 users / 8 -> 3 batches


def test_new_user_equals_known_user_with_the_same_history(data):
    train, _, test = data
    model = DeepAutoencoder(hidden=(16,), dropout=0.2, epochs=3, batch_size=32, device="cpu").fit(train)
    coo = test.targets.matrix.tocoo()
    known = model.predict(test.fold_in, coo.row, coo.col, clip=False)
    renamed = Interactions(train.matrix, np.array([f"x{u}" for u in train.user_ids]),
                           train.item_ids, None, True)
    assert np.array_equal(known, model.predict(renamed, coo.row, coo.col, clip=False))
    np.testing.assert_allclose(known, model.score(train.matrix)[coo.row, coo.col], rtol=1e-6)


def test_fits_a_rank_one_matrix(data):
    train, _, test = data
    # without re-feeding (which pulls towards fixed points, a poor fit for 80 users) it finds
    # the structure: about 0.18 against 0.95 for the mean
    model = DeepAutoencoder(hidden=(16,), dropout=0.0, refeed=False, optimizer="adam", lr=0.01,
                            batch_size=32, epochs=100, device="cpu").fit(train)
    assert model.evaluate_ratings(test)["rmse"] < 0.35 * global_mean_rmse(train, test)


def test_save_load_scores_bit_identically(data, tmp_path):
    train, _, test = data
    model = DeepAutoencoder(hidden=(8, 4), constrained=True, epochs=2, device="cpu").fit(train)
    model.save(tmp_path / "m")
    loaded = DeepAutoencoder.load(tmp_path / "m", device="cpu")
    assert np.array_equal(model.score(train.matrix), loaded.score(train.matrix))
    assert loaded.rating_range_ == model.rating_range_ and loaded.global_mean_ == model.global_mean_


def test_resume_is_bit_identical(tmp_path):
    train, val, _ = rank_one(n_users=30, n_items=16)
    params = dict(hidden=(8, 4), dropout=0.5, batch_size=8, device="cpu")
    assert_resume_is_bit_identical(DeepAutoencoder, params, train, val, tmp_path)
