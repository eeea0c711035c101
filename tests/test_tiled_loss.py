"""The tiled output layer: loss and gradients equal the untiled formulas, for every likelihood."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from aerec import hardware
from aerec.models import tiled_loss
from aerec.models.sparse import SparseBatch
from aerec.models.tiled_loss import item_tile, tiled_output_nll

LIKELIHOODS = ["multinomial", "logistic", "gaussian"]


def _batch(n_rows=9, n_cols=37, seed=1, empty_row=True):
    x = sp.random(n_rows, n_cols, density=0.25, format="lil", random_state=seed, dtype=np.float32)
    if empty_row:
        x[2, :] = 0  # a user without entries
    x = x.tocsr()
    x.eliminate_zeros()
    x.data[:] = np.arange(1, x.nnz + 1) % 3 + 1  # values 1..3
    x.sort_indices()
    return SparseBatch.from_csr(x), torch.from_numpy(x.toarray())


def _reference(likelihood, h, w, b, dense):
    logits = torch.addmm(b, h, w)
    if likelihood == "multinomial":
        return -(torch.log_softmax(logits, 1) * dense).sum()
    if likelihood == "logistic":
        return (F.softplus(logits) - dense * logits).sum()
    return 0.5 * ((dense - logits) ** 2).sum()


def _leaves(seed=0, n_rows=9, d=6, n_cols=37, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [(scale * torch.randn(*shape, generator=g)).requires_grad_()
            for shape in ((n_rows, d), (d, n_cols), (n_cols,))]


def _value_and_grads(fn, leaves):
    for t in leaves:
        t.grad = None
    value = fn(*leaves)
    value.backward()
    return value.item(), [t.grad.clone() for t in leaves]


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("tile", [1, 5, 37, 64])
def test_tiled_loss_and_gradients_equal_the_untiled_formula(likelihood, tile):
    # 37 items in tiles of 1, of 5 (the last one short), of exactly 37 and of more than 37
    batch, dense = _batch()
    leaves = _leaves(scale=3.0)  # logits of several units: the online max matters
    ref, ref_grads = _value_and_grads(lambda h, w, b: 0.3 * _reference(likelihood, h, w, b, dense),
                                      leaves)
    got, got_grads = _value_and_grads(lambda h, w, b: 0.3 * tiled_output_nll(
        h, w, b, batch.rows, batch.col, batch.values, likelihood, tile=tile), leaves)
    assert got == pytest.approx(ref, rel=1e-5)
    for a, b in zip(ref_grads, got_grads):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * a.abs().max().item())


def test_the_online_log_sum_exp_survives_logits_that_overflow_exp():
    # logits near 1000: exp() of them is inf in fp32; the running maximum keeps the sum finite
    batch, dense = _batch(n_rows=3, n_cols=20, seed=2, empty_row=False)
    h, w, b = _leaves(seed=3, n_rows=3, n_cols=20)
    b = (b.detach() + torch.linspace(0, 1000, 20)).requires_grad_()
    ref = _reference("multinomial", h, w, b, dense)
    got = tiled_output_nll(h, w, b, batch.rows, batch.col, batch.values, tile=3)
    assert torch.isfinite(got) and got.item() == pytest.approx(ref.item(), rel=1e-5)


def test_a_step_callback_receives_every_weight_tile_and_no_grad_is_stored():
    batch, dense = _batch()
    h, w, b = _leaves()
    ref_w = _value_and_grads(lambda h, w, b: _reference("multinomial", h, w, b, dense), [h, w, b])[1][1]
    seen = torch.zeros_like(ref_w)
    spans = []

    def step(start, stop, grad):
        spans.append((start, stop))
        seen[:, start:stop] = grad

    for t in (h, w, b):
        t.grad = None
    tiled_output_nll(h, w, b, batch.rows, batch.col, batch.values, step=step, tile=8).backward()
    assert spans == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 37)]
    assert w.grad is None and h.grad is not None and b.grad is not None
    assert torch.allclose(seen, ref_w, rtol=1e-5, atol=1e-6)


def test_tile_fills_the_l2_cache(monkeypatch):
    monkeypatch.setattr(tiled_loss, "l2_cache_bytes", lambda: 2 << 20)
    # 2 MiB / (4 bytes x (500 + 600)) = 476 items -> 448, a multiple of 64
    assert item_tile(500, 600) == 448
    assert item_tile(500, 600, itemsize=2) == 896  # bf16 tiles hold twice as many items
    assert item_tile(1, 1) == tiled_loss.MAX_TILE
    assert item_tile(100_000, 600) == tiled_loss.MIN_TILE


def test_logits_are_held_up_to_256_mib():
    assert tiled_loss.holds_logits(500, 100_000)  # 200 MB
    assert not tiled_loss.holds_logits(500, 300_000)  # 600 MB: tiled


@pytest.mark.skipif(not hardware.bf16_supported("cpu"), reason="no bf16 products on this CPU")
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_under_bf16_autocast_the_tiled_loss_is_close_and_its_gradients_fp32(likelihood):
    batch, dense = _batch(n_rows=16, n_cols=50, seed=3)
    leaves = _leaves(seed=4, n_rows=16, d=32, n_cols=50)
    ref, ref_grads = _value_and_grads(lambda h, w, b: _reference(likelihood, h, w, b, dense), leaves)

    def under_autocast(h, w, b):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return tiled_output_nll(h, w, b, batch.rows, batch.col, batch.values, likelihood, tile=7)

    got, got_grads = _value_and_grads(under_autocast, leaves)
    assert got == pytest.approx(ref, rel=3e-2)
    for a, b in zip(ref_grads, got_grads):
        assert b.dtype == torch.float32
        assert torch.allclose(a, b, atol=5e-2 * a.abs().max().item())


# -- the optimiser that needs no item-sized gradient ---------------------------------------------
def _adam_pair(shape, seed=0):
    from aerec.models.item_adam import ItemAdam

    start = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    ref, got = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    return ref, torch.optim.Adam([ref], lr=0.01), got, ItemAdam([got], lr=0.01)


def test_row_sparse_gradients_give_adams_dense_update_on_every_row(monkeypatch):
    from aerec.models import item_adam

    monkeypatch.setattr(item_adam, "ROW_CHUNK", 4)  # 10 rows in chunks of 4, 4, 2
    ref, ref_opt, got, opt = _adam_pair((10, 3))
    gen = torch.Generator().manual_seed(1)
    for rows in ([0, 3, 9], [3, 4], [], [1, 2, 5, 8]):  # a step with no rows at all as well
        grad = torch.zeros(10, 3)
        idx = torch.tensor(rows, dtype=torch.int64)
        grad[idx] = torch.randn(len(rows), 3, generator=gen)
        ref.grad = grad
        got.grad = torch.sparse_coo_tensor(idx.unsqueeze(0), grad[idx], (10, 3), is_coalesced=True, check_invariants=False)
        ref_opt.step()
        opt.step()
        # rows without gradient this step still move (their moments are not zero): exact Adam
        assert torch.allclose(got, ref, rtol=1e-6, atol=1e-7)
    assert float(opt.state[got]["step"]) == 4.0


def test_tile_steps_in_the_backward_equal_adam_on_the_whole_gradient():
    ref, ref_opt, got, opt = _adam_pair((6, 37), seed=2)
    batch, _ = _batch()
    h = torch.randn(9, 6, generator=torch.Generator().manual_seed(5))
    b = torch.zeros(37)
    for _ in range(3):
        ref.grad = None
        tiled_output_nll(h, ref, b, batch.rows, batch.col, batch.values, tile=8).backward()
        ref_opt.step()
        tiled_output_nll(h, got, b, batch.rows, batch.col, batch.values,
                         step=opt.tile_step(got), tile=8).backward()
        assert got.grad is None
        opt.step()  # nothing left to do for it
        assert torch.allclose(got, ref, rtol=1e-6, atol=1e-7)


# -- the models on both paths ------------------------------------------------------------------
MODELS = [
    ("mult-vae", {"hidden": (16,), "latent": 4}),  # lam 0: output weight stepped in the backward
    ("mult-dae", {"latent": 8}),                   # lam 0.01: output weight's gradient kept
    ("mult-vae", {"hidden": (16,), "latent": 4, "likelihood": "logistic"}),
    ("mult-dae", {"latent": 8, "likelihood": "gaussian"}),
    ("recvae", {"hidden": 16, "latent": 4, "encoder_layers": 2}),
]


@pytest.mark.parametrize("name, params", MODELS)
def test_a_model_trained_on_the_tiled_path_equals_the_held_path(monkeypatch, name, params):
    from aerec.models import get_model_class

    x = sp.random(60, 90, density=0.1, format="csr", random_state=4, dtype=np.float32)
    x.data[:] = 1.0
    settings = {**params, "epochs": 3, "batch_size": 20, "device": "cpu", "seed": 7}
    held = get_model_class(name)(**settings).fit(x)
    monkeypatch.setattr(tiled_loss, "HOLD_LOGITS_BYTES", 0)  # every batch tiled, ItemAdam
    tiled = get_model_class(name)(**settings).fit(x)
    assert tiled.module_.row_sparse_input if name != "recvae" else tiled.module_.encoder.row_sparse_input
    for (key, a), b in zip(held.module_.state_dict().items(), tiled.module_.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), key
    assert held.history_[-1]["loss" if name != "recvae" else "decoder_nll"] == pytest.approx(
        tiled.history_[-1]["loss" if name != "recvae" else "decoder_nll"], rel=1e-5)
    with torch.no_grad():
        assert torch.allclose(held.score_tensor(x[:5]), tiled.score_tensor(x[:5]), atol=1e-4)
