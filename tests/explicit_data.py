"""Small rating data sets with known answers, shared by the tests of the rating models."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from aerec.data.interactions import Interactions
from aerec.training import Trainer
from aerec.data.splits import HeldOut


def rank_one(n_users: int = 80, n_items: int = 50, observed: float = 0.5, seed: int = 0):
    """Ratings ``1 + 4 a_u b_i`` (a rank-1 matrix on the 1..5 scale), a share observed.

    Returns ``(train, validation, test)``: ``train`` an :class:`Interactions`, ``validation`` and
    ``test`` :class:`HeldOut` of the same users whose fold-in is ``train`` and whose targets are
    disjoint unobserved entries of the same matrix. A model that finds the structure predicts the
    targets almost exactly; the global mean misses them by about 0.9.
    """
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.1, 1.0, n_users)
    b = rng.uniform(0.1, 1.0, n_items)
    full = (1.0 + 4.0 * np.outer(a, b)).astype(np.float32)
    draw = rng.random((n_users, n_items))
    parts = [draw < observed, (draw >= observed) & (draw < observed + 0.1), draw >= 0.9]
    users = np.arange(n_users).astype(str)
    items = np.arange(n_items).astype(str)
    train, val, test = (
        Interactions(sp.csr_matrix(np.where(mask, full, 0.0).astype(np.float32)), users, items,
                     None, True)
        for mask in parts
    )
    return train, HeldOut(train, val), HeldOut(train, test)


def global_mean_rmse(train: Interactions, heldout: HeldOut) -> float:
    """RMSE of predicting the training mean for every target."""
    truth = heldout.targets.matrix.data
    return float(np.sqrt(np.mean((truth - train.matrix.data.mean()) ** 2)))


def assert_resume_is_bit_identical(cls, params: dict, train: Interactions, validation: HeldOut,
                                   tmp_path) -> None:
    """Four epochs in one go equal two epochs, then a resume to four from the checkpoint: every
    weight bit for bit and every epoch's validation RMSE."""
    full = Trainer(checkpoint=tmp_path / "a.ckpt").fit(cls(epochs=4, **params), train, validation)
    Trainer(checkpoint=tmp_path / "b.ckpt").fit(cls(epochs=2, **params), train, validation)
    resumed = Trainer(checkpoint=tmp_path / "b.ckpt", resume=True).fit(
        cls(epochs=4, **params), train, validation)
    for name, value in full.module_.state_dict().items():
        assert torch.equal(value, resumed.module_.state_dict()[name]), name
    assert [h["val_rmse"] for h in full.history_] == [h["val_rmse"] for h in resumed.history_]
