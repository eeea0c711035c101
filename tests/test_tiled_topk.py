"""Ranking over item tiles equals ranking the whole score matrix."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.models import tiled_topk
from aerec.models.tiled_topk import score_tile, tiled_top_k


def _layer(n_rows=6, d=5, n_items=41, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n_rows, d, generator=g), torch.randn(d, n_items, generator=g),
            torch.randn(n_items, generator=g))


@pytest.mark.parametrize("tile", [1, 7, 41, 100])
@pytest.mark.parametrize("n", [1, 5, 41])
def test_tiled_top_k_equals_topk_of_the_masked_scores(tile, n):
    h, w, b = _layer()
    seen_rows = torch.tensor([0, 0, 3, 5, 5, 5])
    seen_cols = torch.tensor([40, 2, 17, 0, 1, 39])
    blocked = torch.zeros(41, dtype=torch.bool)
    blocked[[3, 20, 21]] = True
    scores = torch.addmm(b, h, w)
    scores[seen_rows, seen_cols] = -torch.inf
    scores[:, blocked] = -torch.inf
    want = torch.topk(scores, n, dim=1)
    ids, got = tiled_top_k(h, w, b, n, seen=(seen_rows, seen_cols), blocked=blocked, tile=tile)
    # the products of a tile and of all items may round differently; no near-ties here, but
    # the order of the -inf entries (seen, blocked) is arbitrary
    assert torch.allclose(got, want.values, rtol=1e-6, atol=1e-6)
    finite = torch.isfinite(want.values)
    assert torch.equal(ids[finite], want.indices[finite])


def test_per_row_blocked_items_and_rows_with_fewer_items_left_than_n():
    h, w, b = _layer(n_rows=2, n_items=10)
    blocked = torch.zeros(2, 10, dtype=torch.bool)
    blocked[1, 2:] = True  # row 1 has two items left
    ids, scores = tiled_top_k(h, w, b, 4, blocked=blocked, tile=3)
    assert set(ids[1, :2].tolist()) == {0, 1} and torch.isneginf(scores[1, 2:]).all()
    assert torch.isfinite(scores[0]).all()


def test_score_tile_bounds_a_block_of_scores():
    assert score_tile(1) == tiled_topk.SCORE_BLOCK_BYTES // 4  # 8M items: one user, one tile
    assert score_tile(1000) == tiled_topk.SCORE_BLOCK_BYTES // 4000
    assert score_tile(10**9) == 64


@pytest.mark.parametrize("name, params", [("mult-vae", {"hidden": (8,), "latent": 4}),
                                          ("mult-dae", {"latent": 6}),
                                          ("recvae", {"hidden": 8, "latent": 4,
                                                      "encoder_layers": 1})])
def test_a_models_recommendations_over_tiles_equal_the_whole_ranking(monkeypatch, name, params):
    from aerec.models import get_model_class
    from aerec.models.raw_ids import ItemFilter

    x = sp.random(30, 50, density=0.15, format="csr", random_state=3, dtype=np.float32)
    x.data[:] = 1.0
    model = get_model_class(name)(**params, epochs=1, batch_size=10, device="cpu").fit(x)
    scores = model.score(x)
    scores[x.nonzero()] = -np.inf
    blocked = np.zeros(50, bool)
    blocked[[4, 9]] = True
    scores[:, blocked] = -np.inf
    monkeypatch.setattr(tiled_topk, "SCORE_BLOCK_BYTES", 4 * 30 * 7)  # tiles of 7 items
    ids, got = model.recommend_filtered(x, 10, ItemFilter(blocked))
    want = np.sort(scores, axis=1)[:, ::-1][:, :10]
    assert np.allclose(got, want, atol=1e-5)
    assert np.allclose(np.take_along_axis(scores, ids, axis=1), got, atol=1e-5)
    assert not np.isin(ids, np.flatnonzero(blocked)).any()
