"""bf16 precision: detection, fallback, the fused output layer, and training under autocast."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec import hardware
from aerec.errors import ConfigError
from aerec.models import MultDAE, MultVAE
from aerec.models import fused
from aerec.models.fused import linear_multinomial_nll, tiled_decoder_scores
from aerec.models.sparse import SparseBatch

bf16_cpu = pytest.mark.skipif(not hardware.bf16_supported("cpu"),
                              reason="this CPU has no avx512_bf16 / amx_bf16")


def _batch(n_rows=7, n_cols=13, seed=1):
    x = sp.random(n_rows, n_cols, density=0.3, format="csr", random_state=seed, dtype=np.float32)
    x.data[:] = np.arange(1, x.nnz + 1) % 3 + 1  # values 1..3, as ratings or counts
    x.sort_indices()
    return SparseBatch.from_csr(x)


def _reference(h, w, b, batch):
    return -(torch.log_softmax(torch.addmm(b, h, w), 1)[batch.rows, batch.col] * batch.values).sum()


def _leaves(seed=0, n_rows=7, d=5, n_cols=13):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g).requires_grad_()
            for shape in ((n_rows, d), (d, n_cols), (n_cols,))]


def _grads(fn, leaves):
    for t in leaves:
        t.grad = None
    value = fn(*leaves)
    value.backward()
    return value.item(), [t.grad.clone() for t in leaves]


def test_cpuinfo_flags_are_parsed():
    text = "processor : 0\nflags : fpu sse avx512f avx512_bf16 amx_tile\n"
    assert hardware.parse_bf16_flags(text) == ("avx512_bf16",)
    assert hardware.parse_bf16_flags("flags : fpu sse avx2\n") == ()
    assert hardware.parse_bf16_flags("flags : amx_bf16 avx512_bf16\n") == ("avx512_bf16", "amx_bf16")


@pytest.mark.parametrize("tile", [1, 4, 13, 100])
def test_fused_output_layer_equals_log_softmax_and_its_gradients(monkeypatch, tile):
    # 13 items in tiles of 1, of 4 (the last one short), of exactly 13 and of more than 13
    monkeypatch.setattr(fused, "ITEM_TILE", tile)
    assert fused.item_tiles(13)[-1][1] == 13 and len(fused.item_tiles(13)) == -(-13 // tile)
    batch = _batch()
    leaves = _leaves()
    ref, ref_grads = _grads(lambda h, w, b: _reference(h, w, b, batch), leaves)
    got, got_grads = _grads(
        lambda h, w, b: linear_multinomial_nll(h, w, b, batch.rows, batch.col, batch.values), leaves)
    assert got == pytest.approx(ref, rel=1e-6)
    for a, b in zip(ref_grads, got_grads):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tile", [1, 4, 13, 100])
def test_tiled_scores_equal_one_product(monkeypatch, tile):
    monkeypatch.setattr(fused, "ITEM_TILE", tile)
    monkeypatch.setattr(fused, "MIN_ROWS_TO_TILE_SCORES", 1)  # 7 rows: tiled as well
    h, w, b = (t.detach() for t in _leaves(seed=4))
    with torch.no_grad():
        assert torch.allclose(tiled_decoder_scores(h, w, b), torch.addmm(b, h, w), atol=1e-6)


def test_tiled_scores_keep_autograd_when_a_graph_is_built(monkeypatch):
    monkeypatch.setattr(fused, "ITEM_TILE", 4)
    monkeypatch.setattr(fused, "MIN_ROWS_TO_TILE_SCORES", 1)
    h, w, b = _leaves(seed=5)
    tiled_decoder_scores(h, w, b).sum().backward()  # falls back to one differentiable addmm
    assert torch.allclose(h.grad, w.sum(1).expand(7, 5)) and torch.equal(b.grad, torch.full((13,), 7.0))


def test_fused_output_layer_with_an_empty_row_and_a_scaled_loss():
    x = sp.csr_matrix(np.array([[1, 0, 2], [0, 0, 0], [0, 1, 0]], np.float32))
    batch = SparseBatch.from_csr(x)
    leaves = _leaves(seed=2, n_rows=3, d=4, n_cols=3)
    ref, ref_grads = _grads(lambda h, w, b: 0.25 * _reference(h, w, b, batch), leaves)
    got, got_grads = _grads(lambda h, w, b: 0.25 * linear_multinomial_nll(
        h, w, b, batch.rows, batch.col, batch.values), leaves)
    assert got == pytest.approx(ref, rel=1e-6)
    for a, b in zip(ref_grads, got_grads):
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.count_nonzero(got_grads[0][1]) == 0  # the empty row gets no gradient


@bf16_cpu
def test_fused_output_layer_under_bf16_autocast_is_close_and_fp32():
    batch = _batch(n_rows=16, n_cols=50, seed=3)
    leaves = _leaves(seed=4, n_rows=16, d=32, n_cols=50)
    ref, ref_grads = _grads(lambda h, w, b: _reference(h, w, b, batch), leaves)

    def under_autocast(h, w, b):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return linear_multinomial_nll(h, w, b, batch.rows, batch.col, batch.values)

    got, got_grads = _grads(under_autocast, leaves)
    assert got == pytest.approx(ref, rel=2e-2)  # bf16 keeps 8 bits of mantissa
    for a, b in zip(ref_grads, got_grads):
        assert b.dtype == torch.float32
        assert torch.allclose(a, b, atol=5e-2 * a.abs().max().item())


def test_precision_is_a_config_field_with_two_values():
    assert MultVAE().config.precision == "fp32" and MultDAE().config.precision == "fp32"
    assert MultVAE(precision="bf16").config.precision == "bf16"
    with pytest.raises(ConfigError, match="precision"):
        MultVAE(precision="fp16")


def test_without_bf16_hardware_it_warns_and_computes_in_fp32(monkeypatch):
    hardware._warn_fallback.cache_clear()
    monkeypatch.setattr(hardware, "bf16_supported", lambda device: False)
    with pytest.warns(RuntimeWarning, match="computing in fp32"):
        ctx = hardware.autocast("cpu", "bf16")
    with ctx:
        assert not torch.is_autocast_enabled("cpu")
    x = _matrix()
    a = MultDAE(epochs=1, batch_size=20, device="cpu", precision="bf16")
    b = MultDAE(epochs=1, batch_size=20, device="cpu", precision="fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a.fit(x)
    b.fit(x)
    assert torch.equal(a.module_.weights[0], b.module_.weights[0])  # the very same fp32 run
    hardware._warn_fallback.cache_clear()


def _matrix(n_users=60, n_items=40, seed=0):
    m = sp.random(n_users, n_items, density=0.2, format="csr", random_state=seed, dtype=np.float32)
    m.data[:] = 1.0
    return m


@bf16_cpu
@pytest.mark.parametrize("cls", [MultVAE, MultDAE])
def test_bf16_training_keeps_fp32_parameters_and_tracks_fp32(cls):
    x = _matrix()
    runs = {p: cls(epochs=3, batch_size=20, device="cpu", precision=p, seed=3).fit(x)
            for p in ("fp32", "bf16")}
    for p, model in runs.items():
        assert all(w.dtype == torch.float32 for w in model.module_.parameters())
        assert np.isfinite([h["loss"] for h in model.history_]).all()
    losses = {p: np.array([h["nll"] for h in m.history_]) for p, m in runs.items()}
    # same seed, same data: the bf16 run follows the fp32 one to within bf16's rounding
    assert np.allclose(losses["bf16"], losses["fp32"], rtol=0.02)
    assert not torch.equal(runs["bf16"].module_.weights[0], runs["fp32"].module_.weights[0])


@bf16_cpu
def test_bf16_scores_rank_like_fp32_scores():
    x = _matrix(n_users=80, n_items=60)
    model = MultVAE(epochs=2, batch_size=20, device="cpu", seed=1).fit(x)
    fp32 = model.score(x)
    model.config = MultVAE(epochs=2, batch_size=20, device="cpu", seed=1,
                           precision="bf16").config
    bf16 = model.score(x)
    assert bf16.dtype == np.float32
    assert np.allclose(bf16, fp32, atol=0.05 * np.abs(fp32).max())
    top_fp32 = np.argsort(-fp32, axis=1)[:, :5]
    top_bf16 = np.argsort(-bf16, axis=1)[:, :5]
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top_fp32, top_bf16)])
    assert overlap > 0.8
