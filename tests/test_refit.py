"""Given splits: the epoch is chosen on the validation carve, then the model is trained again on
the whole training rows for that many epochs (refit), with early stopping by default."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aerec.cli import main
from aerec.models import MultDAE
from aerec.runs import load_split
from test_run_dir import FAULTY
from tiny_runs import tiny_interactions

PARAMS = {"epochs": 12, "batch_size": 64, "latent": 8, "lr": 0.01, "device": "cpu"}
SETTINGS = [arg for k, v in PARAMS.items() for arg in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def given_files(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny genres data as a given split: per user, a random 80 % to train, 20 % to test."""
    folder = tmp_path_factory.mktemp("given")
    data = tiny_interactions(n_users=240, seed=4)
    rng = np.random.default_rng(0)
    rows, cols = data.matrix.nonzero()
    test = rng.random(len(rows)) < 0.2
    for name, keep in (("train.csv", ~test), ("test.csv", test)):
        lines = ["user,item,rating"] + [f"{data.user_ids[r]},{data.item_ids[c]},5"
                                        for r, c in zip(rows[keep], cols[keep])]
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder / "train.csv", folder / "test.csv"


def _train(files, out: Path, *args: str) -> int:
    return main(["train", "--train", str(files[0]), "--test", str(files[1]), "--model", "mult-dae",
                 *SETTINGS, "--quiet", "--out", str(out), *args])


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def refit_run(tmp_path_factory, given_files) -> Path:
    out = tmp_path_factory.mktemp("runs") / "refit"
    assert _train(given_files, out) == 0
    return out


def test_given_splits_refit_and_stop_early_by_default(refit_run):
    spec = json.loads((refit_run / "run.json").read_text())
    metrics = json.loads((refit_run / "metrics.json").read_text())
    assert spec["training"] == {"patience": 20, "refit": True, "choose": False}
    assert metrics["refit_epochs"] == metrics["best_epoch"]
    assert (refit_run / "selection.json").exists()


def test_the_refit_equals_a_direct_fit_on_the_whole_training_rows(refit_run):
    metrics = json.loads((refit_run / "metrics.json").read_text())
    split = load_split(refit_run / "split")
    direct = MultDAE(**{**PARAMS, "epochs": metrics["best_epoch"]}).fit(split.test.fold_in)
    saved = _weights(refit_run)
    ours = {k: v for k, v in direct.module_.state_dict().items()}
    assert len(saved) == len(ours)
    assert all(any(torch.equal(v, w) for w in saved.values()) for v in ours.values())
    # the whole training rows are more than the remainder the selection trained on
    assert split.test.fold_in.nnz > split.train.nnz


def test_refit_false_keeps_the_model_selected_on_validation(tmp_path, given_files, refit_run):
    out = tmp_path / "plain"
    assert _train(given_files, out, "--refit", "false") == 0
    spec = json.loads((out / "run.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert spec["training"]["refit"] is False and "refit_epochs" not in metrics
    split = load_split(out / "split")
    selected = MultDAE(**PARAMS).fit(split.train, split.validation)
    saved = _weights(out)
    assert all(any(torch.equal(v, w) for w in saved.values())
               for v in selected.module_.state_dict().values())
    assert not _same(saved, _weights(refit_run))


@pytest.mark.parametrize("when", [1, 3])
def test_a_kill_inside_the_refit_then_resume_is_bit_identical(tmp_path, given_files, refit_run, when):
    script = tmp_path / "faulty.py"
    script.write_text(FAULTY.replace(".checkpoint.safetensors.", ".refit-checkpoint.safetensors."))
    out = tmp_path / "run"
    args = ["train", "--train", str(given_files[0]), "--test", str(given_files[1]), "--model",
            "mult-dae", *SETTINGS, "--quiet", "--out", str(out)]
    r = subprocess.run([sys.executable, str(script), "SIGKILL", str(when), *args],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert (out / "selection.json").exists() and not (out / "metrics.json").exists()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert _same(_weights(out), _weights(refit_run))
    assert not list(out.glob(".*.tmp"))


def test_strong_generalization_runs_neither_refit_nor_stop_early(tmp_path):
    from tiny_runs import write_fake_ml100k

    write_fake_ml100k(tmp_path / "data")
    out = tmp_path / "strong"
    assert main(["train", "--data", "ml-100k", "--data-dir", str(tmp_path / "data"), "--model",
                 "mult-dae", "--set", "epochs=2", "--quiet", "--out", str(out)]) == 0
    spec = json.loads((out / "run.json").read_text())
    assert spec["training"] == {"patience": None, "refit": False, "choose": False}
    assert not (out / "selection.json").exists()
    assert main(["train", "--data", "ml-100k", "--data-dir", str(tmp_path / "data"), "--model",
                 "mult-dae", "--refit", "true", "--quiet", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
