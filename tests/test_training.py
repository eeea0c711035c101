"""The shared training loop: checkpoints, bit-exact resume, NaN handling."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.data.interactions import Interactions
from aerec.data.splits import HeldOut
from aerec.errors import ConfigError, TrainingDivergedError
from aerec.models import MultDAE, MultVAE
from aerec.persistence import load_state
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


def _weights(model):
    return {k: v.clone() for k, v in model.module_.state_dict().items()}


@pytest.mark.parametrize("cls", [MultVAE, MultDAE])
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, data, cls):
    train, val = data
    full = Trainer(checkpoint=tmp_path / "a.ckpt").fit(
        cls(epochs=6, batch_size=16, device="cpu"), train, val)
    # a run interrupted after 3 of its 6 epochs (as if killed), then resumed from its checkpoint

    def interrupt(record):
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(checkpoint=tmp_path / "b.ckpt", callbacks=[interrupt]).fit(
            cls(epochs=6, batch_size=16, device="cpu"), train, val)
    resumed = Trainer(checkpoint=tmp_path / "b.ckpt", resume=True).fit(
        cls(epochs=6, batch_size=16, device="cpu"), train, val)
    for k, v in _weights(full).items():
        assert torch.equal(v, resumed.module_.state_dict()[k]), k
    assert full.history_[-1]["loss"] == resumed.history_[-1]["loss"]
    assert [h["val_ndcg@100"] for h in full.history_] == [h["val_ndcg@100"] for h in resumed.history_]
    assert full.best_epoch_ == resumed.best_epoch_


def test_checkpoint_holds_optimiser_counter_generators_and_best(tmp_path, data):
    train, val = data
    Trainer(checkpoint=tmp_path / "checkpoint.safetensors").fit(
        MultVAE(epochs=2, batch_size=16, device="cpu"), train, val)
    state, meta = load_state(tmp_path / "checkpoint.safetensors")
    assert meta["model"] == "mult-vae"
    assert state["epoch"] == 2 and state["update_count"] == 2 * 4  # 60 users / 16 -> 4 batches
    assert set(state["optimizers"]) == {"adam"}
    assert state["optimizers"]["adam"]["state"][0]["exp_avg"].shape == (40, 600)
    assert state["best_weights"] is not None and state["best_epoch"] in (1, 2)
    assert state["generator"].dtype == torch.uint8
    assert "state" in state["rng"]
    assert len(state["history"]) == 2
    assert not list(tmp_path.glob("*.tmp"))  # nothing half-written left behind


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, data):
    with pytest.raises(ConfigError, match="no checkpoint"):
        Trainer(checkpoint=tmp_path / "none.ckpt", resume=True).fit(MultVAE(epochs=1, device="cpu"),
                                                                      data[0])


def test_nan_loss_stops_with_message_and_keeps_best(data):
    train, val = data
    model = MultVAE(epochs=5, batch_size=16, device="cpu")
    calls = {"n": 0}
    original = model._loss

    def poisoned(state, batch):
        loss, parts = original(state, batch)
        calls["n"] += 1
        if calls["n"] > 8:  # from the third epoch on
            loss = loss * float("nan")
        return loss, parts

    model._loss = poisoned
    with pytest.raises(TrainingDivergedError, match="nan.*epoch 3"):
        model.fit(train, val)
    assert model.best_epoch_ in (1, 2)
    assert np.isfinite(model.score(val.fold_in.matrix)).all()


def test_same_seed_same_model_other_seed_other_model(data):
    train, _ = data
    a = MultDAE(epochs=2, batch_size=16, device="cpu", seed=1).fit(train)
    b = MultDAE(epochs=2, batch_size=16, device="cpu", seed=1).fit(train)
    c = MultDAE(epochs=2, batch_size=16, device="cpu", seed=2).fit(train)
    assert all(torch.equal(v, b.module_.state_dict()[k]) for k, v in _weights(a).items())
    assert not torch.equal(a.module_.weights[0], c.module_.weights[0])
