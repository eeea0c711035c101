"""The Trainer: data-only fit, early stopping, callbacks (TensorBoard), the progress bar, phases."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.data.interactions import Interactions
from aerec.data.splits import HeldOut
from aerec.errors import ConfigError
from aerec.models import EASE, REGISTRY, MultDAE, MultVAE, RecVAE
from aerec.models.torch_base import TorchRecommender
from aerec.training import Phase, TensorBoardLogger, Trainer


@pytest.fixture
def data():
    x = sp.random(80, 40, density=0.2, format="csr", random_state=3, dtype=np.float32)
    x.data[:] = 1
    inter = Interactions(x, np.arange(80).astype(str), np.arange(40).astype(str), None, False)
    held = inter.select_users(np.arange(60, 80))
    keep = np.arange(held.nnz) % 3 != 0
    return inter.select_users(np.arange(60)), HeldOut(held.mask(keep), held.mask(~keep))


def _weights(model):
    return {k: v.clone() for k, v in model.module_.state_dict().items()}


def test_fit_takes_data_only():
    """Data, and only the progress bar of the run options (keyword-only: on by default where a
    terminal or notebook watches); the others belong to the Trainer."""
    import inspect

    for cls in REGISTRY.values():
        signature = inspect.signature(cls.fit)
        params = list(signature.parameters)
        assert params == ["self", "train", "validation", "progress"], (cls.name, params)
        assert signature.parameters["progress"].kind is inspect.Parameter.KEYWORD_ONLY


def test_model_fit_equals_a_default_trainer_bit_for_bit(data):
    train, val = data
    a = MultDAE(epochs=3, batch_size=16, device="cpu").fit(train, val)
    b = Trainer().fit(MultDAE(epochs=3, batch_size=16, device="cpu"), train, val)
    assert all(torch.equal(v, b.module_.state_dict()[k]) for k, v in _weights(a).items())
    assert a.history_ == [{**h, "seconds": a.history_[i]["seconds"],
                           "train_seconds": a.history_[i]["train_seconds"]}
                          for i, h in enumerate(b.history_)]


def test_callbacks_receive_every_epochs_figures(data):
    train, val = data
    seen = []
    Trainer(callbacks=[seen.append]).fit(MultVAE(epochs=3, batch_size=16, device="cpu"), train, val)
    assert [r["epoch"] for r in seen] == [1, 2, 3]
    assert {"loss", "nll", "kl", "beta", "val_ndcg@100", "seconds"} <= set(seen[0])


def test_progress_true_shows_a_bar_in_python(data, capsys):
    train, val = data
    Trainer(progress=True).fit(MultDAE(epochs=2, batch_size=16, device="cpu"), train, val)
    err = capsys.readouterr().err
    assert "2/2" in err and "epoch" in err
    MultDAE(epochs=2, batch_size=16, device="cpu").fit(train, val)
    assert capsys.readouterr().err == ""  # model.fit alone is quiet


def _dae(epochs):
    return MultDAE(epochs=epochs, batch_size=16, device="cpu", lr=0.05)


def _improvements(history):
    """Epochs at which the validation NDCG@100 reached a new best."""
    best, out = -1.0, []
    for h in history:
        if h["val_ndcg@100"] > best:
            best, out = h["val_ndcg@100"], out + [h["epoch"]]
    return out


def test_early_stopping_stops_after_patience_epochs_without_a_better_figure(data):
    train, val = data
    full = _dae(20).fit(train, val)
    early = Trainer(patience=3).fit(_dae(20), train, val)
    stop = early.epochs_trained_
    assert early.stopped_early_ and stop < 20
    # it ran exactly the full run's first `stop` epochs, and stopped 3 after its last best one
    assert early.history_[-1]["val_ndcg@100"] == full.history_[stop - 1]["val_ndcg@100"]
    assert early.best_epoch_ == _improvements(full.history_[:stop])[-1] == stop - 3
    short = _dae(stop).fit(train, val)  # a plain run of that many epochs keeps the same model
    assert all(torch.equal(v, short.module_.state_dict()[k]) for k, v in _weights(early).items())


def test_early_stopping_with_enough_patience_keeps_the_full_runs_best_model(data):
    train, val = data
    full = _dae(20).fit(train, val)
    marks = _improvements(full.history_)
    patience = max(b - a for a, b in zip([0] + marks, marks)) + 1  # longer than any wait for a best
    early = Trainer(patience=patience).fit(_dae(20), train, val)
    assert early.best_epoch_ == full.best_epoch_
    assert early.epochs_trained_ == min(20, full.best_epoch_ + patience)
    assert all(torch.equal(v, early.module_.state_dict()[k]) for k, v in _weights(full).items())


def test_early_stopping_resumes_to_the_same_stop(tmp_path, data):
    train, val = data
    ckpt = tmp_path / "c.ckpt"
    full = Trainer(patience=3).fit(_dae(20), train, val)
    Trainer(patience=3, checkpoint=ckpt).fit(_dae(full.epochs_trained_ - 1), train, val)
    resumed = Trainer(patience=3, checkpoint=ckpt, resume=True).fit(_dae(20), train, val)
    assert full.stopped_early_ and resumed.stopped_early_
    assert resumed.epochs_trained_ == full.epochs_trained_ and resumed.best_epoch_ == full.best_epoch_
    assert all(torch.equal(v, resumed.module_.state_dict()[k]) for k, v in _weights(full).items())


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_patience_is_refused(bad):
    with pytest.raises(ConfigError, match="patience"):
        Trainer(patience=bad)


def test_patience_needs_validation(data):
    with pytest.raises(ConfigError, match="validation"):
        Trainer(patience=3).fit(MultDAE(epochs=2, device="cpu"), data[0])


def test_tensorboard_callback_writes_an_event_file(tmp_path, data):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train, val = data
    Trainer(callbacks=[TensorBoardLogger(tmp_path / "tb")]).fit(
        MultVAE(epochs=3, batch_size=16, device="cpu"), train, val)
    files = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(files) == 1
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert {"loss", "kl", "val_ndcg@100"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("val_ndcg@100")] == [1, 2, 3]


def test_closed_form_models_ignore_run_options_but_fit(data):
    train, val = data
    model = Trainer(progress=True).fit(EASE(lam=10.0), train, val)
    assert model.score(val.fold_in.matrix).shape == (20, 40)


def test_recvae_epoch_is_its_phases(data):
    phases = RecVAE(encoder_epochs=3, decoder_epochs=2).training_phases()
    assert [p.optimizers for p in phases] == [("encoder",)] * 3 + [("decoder",)] * 2
    assert [p.after is not None for p in phases] == [False, False, True, False, False]
    assert all(isinstance(p, Phase) for p in phases)


def test_no_model_file_has_an_epoch_loop():
    """The loop lives in aerec.training only: no model module iterates over epochs or steps an
    optimiser itself."""
    import inspect

    from aerec.models import autorec, blend, deep_ae, mf, recvae, vae

    for module in (autorec, blend, deep_ae, mf, recvae, vae):
        source = inspect.getsource(module)
        assert ".step()" not in source and "range(cfg.epochs" not in source, module.__name__
        assert "zero_grad" not in source and ".backward(" not in source, module.__name__
    assert all(issubclass(cls, TorchRecommender) or not hasattr(cls, "_loss")
               for cls in REGISTRY.values())


def test_the_contract_points_one_way():
    """The Trainer calls the models' hooks; no model calls the Trainer, and a model that does not
    train by epochs takes no trainer it would ignore."""
    import importlib
    import inspect

    for cls in REGISTRY.values():
        source = inspect.getsource(importlib.import_module(cls.__module__))
        assert "trainer.train(" not in source and "._fit_with(" not in source, cls.__module__
        if not cls.trains_by_epochs and hasattr(cls, "_fit") and not hasattr(cls, "_fit_members"):
            assert "trainer" not in inspect.signature(cls._fit).parameters, cls.name
    assert REGISTRY["ease"].trains_by_epochs is False and REGISTRY["mult-vae"].trains_by_epochs


def test_the_trainer_hands_its_result_to_the_model(data):
    from aerec.training import TrainResult

    train, val = data
    model = Trainer(patience=2).fit(MultDAE(epochs=4, batch_size=16, device="cpu"), train, val)
    result = model.training_
    assert isinstance(result, TrainResult)
    assert result.epochs_trained == len(result.history) == model.epochs_trained_ <= 4
    assert result.best_epoch == model.best_epoch_ and result.history is model.history_
    assert [h["epoch"] for h in result.history] == list(range(1, result.epochs_trained + 1))
