"""ELSA: the paper's loss without the dense output, scores, sizes from a budget, bit-exact resume;
and evaluation's bound on one batch's scores."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from aerec import evaluation
from aerec.data.interactions import Interactions
from aerec.data.splits import HeldOut
from aerec.errors import ConfigError
from aerec.models import ELSA
from aerec.models import elsa as elsa_module
from aerec.models.sparse import SparseBatch
from aerec.training import Trainer


@pytest.fixture
def data():
    x = sp.random(80, 40, density=0.2, format="csr", random_state=7, dtype=np.float32)
    x.data[:] = 1
    inter = Interactions(x, np.arange(80).astype(str), np.arange(40).astype(str), None, False)
    train = inter.select_users(np.arange(60))
    held = inter.select_users(np.arange(60, 80))
    keep = np.arange(held.nnz) % 3 != 0
    return train, HeldOut(held.mask(keep), held.mask(~keep))


def _dense_nmse(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The paper's loss written out with the dense output."""
    out = x @ a @ a.T - x
    return ((F.normalize(out, dim=1) - F.normalize(x, dim=1)) ** 2).sum(dim=1).mean()


def test_the_loss_equals_the_dense_normalised_squared_error():
    gen = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(30, 6, generator=gen, dtype=torch.float64), dim=1)
    x = sp.random(9, 30, density=0.2, format="csr", random_state=3, dtype=np.float64)
    x.data[:] = 1
    batch = SparseBatch.from_csr(x)
    ours = elsa_module.nmse(a, batch, batch.values.double())
    dense = _dense_nmse(a, torch.from_numpy(x.toarray()))
    assert float(ours) == pytest.approx(float(dense), rel=1e-10)


def test_the_loss_gradient_equals_the_dense_one():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(20, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    x = sp.random(7, 20, density=0.3, format="csr", random_state=4, dtype=np.float64)
    x.data[:] = 1
    batch = SparseBatch.from_csr(x)
    (g1,) = torch.autograd.grad(elsa_module.nmse(F.normalize(w, dim=1), batch,
                                                 batch.values.double()), w)
    (g2,) = torch.autograd.grad(_dense_nmse(F.normalize(w, dim=1), torch.from_numpy(x.toarray())), w)
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-10)


def test_scores_are_x_a_a_transpose_minus_x(data):
    train, val = data
    model = ELSA(rank=5, epochs=2, device="cpu").fit(train, val)
    a = F.normalize(model.module_.weight.detach(), dim=1)
    x = train.matrix[:7]
    expected = torch.from_numpy(x.toarray()) @ a @ a.T - torch.from_numpy(x.toarray())
    np.testing.assert_allclose(model.score(x), expected.numpy(), atol=1e-5)
    sims = model._item_similarities(np.array([0, 3])).numpy()
    np.testing.assert_allclose(sims, (a[[0, 3]] @ a.T).numpy(), atol=1e-5)


def test_training_lowers_the_loss(data):
    train, val = data
    model = ELSA(rank=8, epochs=10, batch_size=16, lr=0.05, device="cpu").fit(train, val)
    losses = [h["loss"] for h in model.history_]
    assert losses[-1] < losses[0] - 0.05


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, data):
    train, val = data

    def make():
        return ELSA(rank=4, epochs=6, batch_size=16, device="cpu")

    full = Trainer(checkpoint=tmp_path / "a.ckpt").fit(make(), train, val)

    def interrupt(record):
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(checkpoint=tmp_path / "b.ckpt", callbacks=[interrupt]).fit(make(), train, val)
    resumed = Trainer(checkpoint=tmp_path / "b.ckpt", resume=True).fit(make(), train, val)
    assert torch.equal(full.module_.weight, resumed.module_.weight)
    assert [h["loss"] for h in full.history_] == [h["loss"] for h in resumed.history_]


def test_rank_and_batch_size_resolve_from_the_data_and_the_budget(data):
    train, _ = data
    assert ELSA().resolved_for(train) == {"rank": 256, "batch_size": 128}
    budget = elsa_module.WORKSPACE_BYTES + 6 * 4 * 40 * 100
    assert ELSA(memory=str(budget)).resolved_for(train)["rank"] == 96  # 100, to a multiple of 8
    assert ELSA(rank=7, batch_size=5).resolved_for(train) == {"rank": 7, "batch_size": 5}
    # the default at a million items: what 2 GB allows
    assert ELSA().resolve_rank(1_000_000) == 56
    with pytest.raises(ConfigError, match="too small"):
        ELSA(memory="1MB").resolve_rank(1000)


def test_a_model_file_of_another_rank_is_refused(data, tmp_path):
    from aerec.errors import DataError
    from aerec.models.storage import load_model

    train, _ = data
    model = ELSA(rank=4, epochs=1, device="cpu").fit(train)
    model.save(tmp_path / "m")
    text = (tmp_path / "m" / "model.json").read_text().replace('"rank": 4', '"rank": 8')
    (tmp_path / "m" / "model.json").write_text(text)
    with pytest.raises(DataError, match="rank"):
        load_model(tmp_path / "m", device="cpu")


def test_evaluation_bounds_one_batch_of_scores(monkeypatch):
    from aerec.models import budget

    monkeypatch.setattr(budget, "SCORE_BLOCK_BYTES", 4 * 10 * 3)  # 3 users of 10 items
    x = sp.csr_matrix(np.eye(10, dtype=np.float32))
    seen = []

    def score(batch):
        seen.append(batch.shape[0])
        return np.zeros(batch.shape, np.float32)

    evaluation.evaluate_ranking(score, x, x, ks=(5,), batch_size=1000)
    assert seen == [3, 3, 3, 1]
