"""The CUDA path: batches sliced on the device, training, bf16, evaluation. Skipped without a GPU,
except the slicing's equality with the host path, which is checked on the CPU too."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.bench import random_holdout
from aerec.training import Trainer
from aerec.data.synthetic import synthesize
from aerec.evaluation import evaluate_ranking
from aerec.models import MultDAE, MultVAE
from aerec.models.sparse import SparseBatch, TorchCSR

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=[cuda, pytest.mark.gpu])]


def _data(n_users=120, n_items=70, nnz=2_400, seed=0) -> sp.csr_matrix:
    return synthesize(n_users=n_users, n_items=n_items, n_interactions=nnz, seed=seed).matrix


@pytest.mark.parametrize("device", DEVICES)
def test_batches_sliced_on_the_device_equal_the_host_batches(device):
    m = _data()
    on_device = TorchCSR.from_scipy(m, device)
    rows = np.array([0, 3, 4, 17, 50, 119])
    a = on_device.batch(rows)
    b = SparseBatch.from_csr(m[rows], "cpu")
    assert a.shape == b.shape
    for name in ("crow", "col", "rows", "values", "t_crow", "t_col", "t_perm"):
        got = getattr(a, name)
        assert got.device.type == torch.device(device).type, name
        assert torch.equal(got.cpu(), getattr(b, name)), name


def test_an_empty_row_slices_right():
    m = sp.csr_matrix(np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]], np.float32))
    a = TorchCSR.from_scipy(m, "cpu").batch(np.array([0, 1, 2]))
    b = SparseBatch.from_csr(m)
    assert torch.equal(a.crow, b.crow) and torch.equal(a.t_col, b.t_col)


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("cls", [MultVAE, MultDAE])
def test_training_on_cuda_matches_the_cpu_in_distribution(cls):
    m = _data()
    gpu = cls(epochs=3, batch_size=40, device="cuda", seed=2).fit(m)
    cpu = cls(epochs=3, batch_size=40, device="cpu", seed=2).fit(m)
    assert all(p.device.type == "cuda" for p in gpu.module_.parameters())
    # Same seed, other device: the noise differs, the losses agree closely.
    assert np.isfinite([h["loss"] for h in gpu.history_]).all()
    assert gpu.history_[-1]["nll"] == pytest.approx(cpu.history_[-1]["nll"], rel=0.05)
    scores = gpu.score_tensor(m[:10])
    assert scores.device.type == "cuda" and scores.shape == (10, m.shape[1])


@cuda
@pytest.mark.gpu
def test_cuda_resume_is_bit_identical(tmp_path):
    m = _data()
    full = Trainer(checkpoint=tmp_path / "a.ckpt").fit(MultVAE(epochs=4, batch_size=40, device="cuda"), m)
    Trainer(checkpoint=tmp_path / "b.ckpt").fit(MultVAE(epochs=2, batch_size=40, device="cuda"), m)
    resumed = Trainer(checkpoint=tmp_path / "b.ckpt", resume=True).fit(
        MultVAE(epochs=4, batch_size=40, device="cuda"), m)
    for k, v in full.module_.state_dict().items():
        assert torch.equal(v, resumed.module_.state_dict()[k]), k


@cuda
@pytest.mark.gpu
def test_cuda_nan_is_caught_within_the_epoch():
    from aerec.errors import TrainingDivergedError

    m = _data()
    model = MultVAE(epochs=2, batch_size=40, device="cuda")
    original = model._loss

    def poisoned(state, batch):
        loss, parts = original(state, batch)
        return loss * float("nan"), parts

    model._loss = poisoned
    with pytest.raises(TrainingDivergedError, match="epoch 1"):
        model.fit(m)


@cuda
@pytest.mark.gpu
def test_cuda_evaluation_equals_cpu_evaluation():
    m = _data(n_users=200)
    model = MultVAE(epochs=2, batch_size=50, device="cuda", seed=1).fit(m[:150])
    fold_in, targets = random_holdout(m[150:], 0.3, seed=0)
    on_gpu = evaluate_ranking(model.score_tensor, fold_in, targets, ks=(10,))
    model.module_.to("cpu")
    model.device_ = torch.device("cpu")
    on_cpu = evaluate_ranking(model.score_tensor, fold_in, targets, ks=(10,))
    assert on_gpu["ndcg@10"] == pytest.approx(on_cpu["ndcg@10"], abs=1e-3)


@cuda
@pytest.mark.gpu
def test_cuda_bf16_autocast_trains():
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    m = _data()
    model = MultVAE(epochs=2, batch_size=40, device="cuda", precision="bf16").fit(m)
    assert np.isfinite([h["loss"] for h in model.history_]).all()
    assert all(p.dtype == torch.float32 for p in model.module_.parameters())
