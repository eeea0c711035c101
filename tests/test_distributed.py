"""Data-parallel training: 2 processes on the CPU (gloo), launched by torchrun, as a user would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from aerec.data.synthetic import write_synthetic
from aerec.distributed import pool_means, shard
from aerec.errors import ConfigError
from aerec.models import MultVAE
from aerec.training import Trainer
from aerec.runs import evaluate_model, load_split

#: A small model, so that the runs take seconds: the protocol is what is tested.
PARAMS = ["hidden=64", "latent=32", "epochs=4", "batch_size=64", "device=cpu"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def ratings(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dist") / "synth.csv"
    write_synthetic(path, n_users=700, n_items=150, n_interactions=21_000, seed=11)
    return path


def _train_args(ratings: Path, out: Path, seed: int) -> list[str]:
    args = ["train", "--train", str(ratings), "--split", "strong", "--heldout", "150",
            "--model", "mult-vae", "--out", str(out), "--quiet", "--json"]
    for p in PARAMS + [f"seed={seed}"]:
        args += ["--set", p]
    return args


def test_two_processes_match_one_within_the_seeds_noise_and_only_rank0_writes(
        ratings, tmp_path):
    done = _torchrun(["-m", "aerec.cli", *_train_args(ratings, tmp_path / "dp", 1)], tmp_path)
    assert done.stdout.count('"ndcg@100"') == 1  # one process printed the metrics
    run = tmp_path / "dp"
    dp = json.loads((run / "metrics.json").read_text())
    assert json.loads((run / "run.json").read_text())["model"] == "mult-vae"
    assert {"run.json", "split", "checkpoint.safetensors", "model", "history.json",
            "metrics.json"} <= {p.name for p in run.iterdir()}
    assert len(json.loads((run / "history.json").read_text())) == 4 and dp["epochs"] == 4
    # One process on the same split, three seeds: the two-process run is within their noise.
    split = load_split(run / "split")
    params = dict(p.split("=") for p in PARAMS)
    single = []
    for seed in (1, 2, 3):
        model = MultVAE(**params, seed=seed).fit(split.train, split.validation)
        single.append(evaluate_model(model, split.test)["ndcg@100"])
    noise = max(3 * float(np.std(single)), 0.02)
    assert abs(dp["ndcg@100"] - float(np.mean(single))) <= noise, (dp["ndcg@100"], single)


SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    import numpy as np, torch
    from aerec import distributed
    from aerec.data.interactions import Interactions
    from aerec.data.splits import HeldOut
    from aerec.data.synthetic import synthesize
    from aerec.models import MultVAE
    from aerec.training import Trainer

    out = sys.argv[1]
    distributed.init()
    rank = distributed.rank()
    data = synthesize(n_users=400, n_items=120, n_interactions=12_000, seed=5)
    train, held = data.select_users(np.arange(300)), data.select_users(np.arange(300, 400))
    keep = np.random.default_rng(0).random(held.matrix.nnz) < 0.8
    model = MultVAE(hidden=(48,), latent=16, epochs=4, batch_size=50, total_anneal_steps=20,
                    device="cpu", seed=9)
    Trainer(checkpoint=f"{out}/rank{rank}.ckpt").fit(model, train,
                                                      HeldOut(held.mask(keep), held.mask(~keep)))
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes()
                                     for p in model.module_.parameters())).hexdigest()
    json.dump({"digest": digest, "history": model.history_, "best": model.best_epoch_},
              open(f"{out}/rank{rank}.json", "w"))
    distributed.shutdown()
""")


def test_ranks_stay_identical_and_agree_on_annealing_and_selection(tmp_path):
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    _torchrun([str(script), str(tmp_path)], tmp_path)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["digest"] == r1["digest"]  # the same weights in both processes
    assert r0["best"] == r1["best"]
    for a, b in zip(r0["history"], r1["history"]):
        assert a["val_ndcg@100"] == b["val_ndcg@100"]
        assert a["beta"] == b["beta"] and a["loss"] == b["loss"]  # pooled figures
    # 300 users / 50 = 6 updates per epoch; beta = min(0.2, updates / 20) averaged over the
    # epoch's updates: (0 + .05 + .1 + .15 + .2 + .2) / 6 in the first epoch, as one process
    assert [h["beta"] for h in r0["history"]] == pytest.approx([0.7 / 6, 0.2, 0.2, 0.2])
    assert (tmp_path / "rank0.ckpt").exists()
    assert not (tmp_path / "rank1.ckpt").exists()  # rank 1 wrote nothing


def test_shares_and_pooled_means():
    rows = np.arange(11)
    parts = [shard(rows, r, 3) for r in range(3)]
    assert [list(p) for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    # one process: pooling is the identity
    assert pool_means({"ndcg@10": 0.5, "ndcg@10_se": 0.1, "n_users": 4}, "cpu") == {
        "ndcg@10": 0.5, "n_users": 4}


def test_distributed_true_without_a_group_is_a_clear_error():
    x = np.zeros((4, 3), np.float32)
    x[:, 0] = 1
    import scipy.sparse as sp

    with pytest.raises(ConfigError, match="torchrun"):
        Trainer(distributed=True).fit(MultVAE(epochs=1, device="cpu"), sp.csr_matrix(x))
