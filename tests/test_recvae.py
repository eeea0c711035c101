"""RecVAE: the composite prior by hand, the user-scaled KL weight, the dense encoder, the
alternating updates, and bit-identical save / load."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from aerec.models.recvae import (PRIOR_WEIGHTS, WIDE_LOGVAR, RecVAE, composite_prior_log_density,
                                 log_normal)
from aerec.models.sparse import SparseBatch
from aerec.training import Trainer
from aerec.training.trainer import initial_state

SMALL = {"hidden": 16, "latent": 4, "batch_size": 8, "epochs": 2, "device": "cpu", "seed": 7}


def _matrix(n_users: int = 24, n_items: int = 15, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    x = (rng.random((n_users, n_items)) < 0.3).astype(np.float32)
    x[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0  # nobody is empty
    return sp.csr_matrix(x)


def _normal_pdf(x: float, mu: float, var: float) -> float:
    return math.exp(-((x - mu) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)


def test_prior_mixture_weights_are_the_papers():
    assert PRIOR_WEIGHTS == (3 / 20, 3 / 4, 1 / 10)
    assert math.isclose(sum(PRIOR_WEIGHTS), 1.0)
    assert WIDE_LOGVAR == 10.0


def test_composite_prior_log_density_by_hand():
    z = torch.tensor([[0.5, -2.0]], dtype=torch.float64)
    post_mu = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    post_logvar = torch.tensor([[math.log(4.0), math.log(0.25)]], dtype=torch.float64)
    got = composite_prior_log_density(z, post_mu, post_logvar)
    for d, (zz, mu, var) in enumerate([(0.5, 1.0, 4.0), (-2.0, 0.0, 0.25)]):
        density = (0.15 * _normal_pdf(zz, 0.0, 1.0) + 0.75 * _normal_pdf(zz, mu, var)
                   + 0.10 * _normal_pdf(zz, 0.0, math.exp(10.0)))
        assert got[0, d].item() == pytest.approx(math.log(density), rel=1e-12)


def test_log_normal_by_hand():
    x = torch.tensor([1.5], dtype=torch.float64)
    assert log_normal(x, 0.5, math.log(2.0)).item() == pytest.approx(
        math.log(_normal_pdf(1.5, 0.5, 2.0)), rel=1e-12)


def test_kl_weight_is_gamma_times_the_users_interaction_count():
    rows = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 0, 0]], np.float32))
    batch = SparseBatch.from_csr(rows)
    np.testing.assert_allclose(RecVAE(gamma=0.005).kl_weight(batch).numpy(), [0.010, 0.025, 0.005])
    np.testing.assert_allclose(RecVAE(gamma=0.01).kl_weight(batch).numpy(), [0.02, 0.05, 0.01])
    # a constant beta replaces the per-user weight
    np.testing.assert_allclose(RecVAE(beta=0.2).kl_weight(batch).numpy(), [0.2, 0.2, 0.2])


def _state(model: RecVAE, x: sp.csr_matrix):
    model.train_matrix_shape_ = x.shape
    return initial_state(model, x.shape[1])


def test_kl_term_scales_with_gamma():
    x = _matrix()
    batch = SparseBatch.from_csr(x)
    figures = []
    for gamma in (0.005, 0.01):
        model = RecVAE(**SMALL, gamma=gamma)
        state = _state(model, x)  # same seed: same weights, same dropout and noise
        figures.append(model._encoder_loss(state, batch)[1])
    assert figures[1]["kl"] == pytest.approx(2 * figures[0]["kl"], rel=1e-5)
    assert figures[1]["nll"] == pytest.approx(figures[0]["nll"], rel=1e-6)


def test_encoder_is_densely_connected_with_layernorm_and_swish():
    x = _matrix(n_users=5)
    model = RecVAE(**SMALL)
    enc = _state(model, x).module.encoder
    batch = SparseBatch.from_csr(x)
    values = model._input_values(batch, None)
    with torch.no_grad():
        mu, logvar = enc(batch, values)
        dense = torch.from_numpy(x.toarray())
        dense = dense / (dense.norm(dim=1, keepdim=True) + 1e-10)
        outs = []
        h = dense
        for i, (w, b, ln) in enumerate(zip(enc.weights, enc.biases, enc.norms)):
            pre = h @ w + b + (sum(outs) if outs else 0.0)
            h = F.layer_norm(F.silu(pre), (16,), ln.weight, ln.bias, eps=0.1)
            outs.append(h)
        head = h @ enc.head_weight + enc.head_bias
    assert len(enc.weights) == 5
    torch.testing.assert_close(mu, head[:, :4], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logvar, head[:, 4:], rtol=1e-5, atol=1e-5)


def test_input_is_l2_normalised():
    x = _matrix(n_users=4)
    model = RecVAE(**SMALL).fit(x)
    np.testing.assert_allclose(model.score(x), model.score(x * 3.0), rtol=1e-5, atol=1e-5)


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a, b))


def test_alternation_updates_one_part_at_a_time():
    x = _matrix()
    model = RecVAE(**SMALL)
    state = _state(model, x)
    net = state.module
    enc0, dec0, prior0 = _params(net.encoder), net.decoder_parameters(), _params(net.prior_encoder)
    dec0 = [p.detach().clone() for p in dec0]

    encoder_phase = model.training_phases()[0]
    assert encoder_phase.optimizers == ("encoder",)
    Trainer()._pass(model, state, x, encoder_phase)
    assert not _same(_params(net.encoder), enc0), "the encoder phase must move the encoder"
    assert _same([p.detach() for p in net.decoder_parameters()], dec0), "decoder moved"
    assert _same(_params(net.prior_encoder), prior0), "the prior copy moves only on refresh"

    net.update_prior()
    enc1 = _params(net.encoder)
    assert _same(_params(net.prior_encoder), enc1)

    decoder_phase = model.training_phases()[-1]
    assert decoder_phase.optimizers == ("decoder",)
    Trainer()._pass(model, state, x, decoder_phase)
    assert _same(_params(net.encoder), enc1), "the decoder phase must leave the encoder alone"
    assert not _same([p.detach() for p in net.decoder_parameters()], dec0)


def test_an_epoch_is_three_encoder_passes_then_a_refresh_then_one_decoder_pass():
    x = _matrix()  # 24 users, batches of 8: 3 updates per pass
    model = RecVAE(**SMALL)
    state = _state(model, x)
    parts = Trainer()._train_epoch(model, state, x)
    assert state.update_count == (3 + 1) * 3
    # the prior copy is the encoder as it was after the encoder passes, which the decoder pass
    # did not change
    assert _same(_params(state.module.prior_encoder), _params(state.module.encoder))
    assert {"loss", "nll", "kl", "decoder_nll"} <= set(parts)


def test_fit_save_load_scores_bit_identically(tmp_path):
    x = _matrix()
    model = RecVAE(**SMALL).fit(x, None)
    model.save(tmp_path / "recvae")
    loaded = RecVAE.load(tmp_path / "recvae", device="cpu")
    assert np.array_equal(model.score(x), loaded.score(x))
    assert loaded.get_params() == model.get_params()


def test_training_is_reproducible_from_the_seed():
    x = _matrix()
    a = RecVAE(**SMALL).fit(x).score(x)
    b = RecVAE(**SMALL).fit(x).score(x)
    assert np.array_equal(a, b)
