"""The Mult-VAE paper's beta search: the curve, the choice, and ``aerec train --beta-search``."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from aerec.beta_search import check_beta_search, search_beta
from aerec.cli import main
from aerec.data.splits import strong_generalization
from aerec.errors import ConfigError
from aerec.models import MultVAE

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from tiny_runs import tiny_interactions  # noqa: E402

SMALL = {"epochs": 8, "batch_size": 64, "hidden": "32", "latent": 8, "device": "cpu", "seed": 3}


def test_search_anneals_to_one_and_picks_the_best_epochs_beta():
    split = strong_generalization(tiny_interactions(), 30, seed=1)
    search = search_beta(split.train, split.validation, SMALL)
    betas = [r["beta"] for r in search.records]
    ndcgs = [r["ndcg@100"] for r in search.records]
    assert [r["epoch"] for r in search.records] == list(range(1, 9))
    assert search.anneal_epochs == 8.0
    # 240 training users in batches of 64: 4 updates an epoch over 32 updates, beta = updates / 32
    # averaged over the epoch's updates: epoch 1 uses 0, 1, 2, 3 -> 1.5 / 32
    assert betas[0] == pytest.approx(1.5 / 32)
    assert betas[-1] == pytest.approx(29.5 / 32)
    assert np.all(np.diff(betas) > 0)
    best = int(np.argmax(ndcgs))
    assert search.best_epoch == best + 1
    assert search.best_beta == betas[best]
    assert search.best_ndcg == max(ndcgs)


def _tiny_csv(path):
    data = tiny_interactions()
    coo = data.matrix.tocoo()
    lines = ["userId,movieId,rating"] + [
        f"{data.user_ids[r]},{data.item_ids[c]},5" for r, c in zip(coo.row, coo.col)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_beta_search_writes_the_curve_and_trains_with_the_chosen_beta(tmp_path):
    csv = _tiny_csv(tmp_path / "ratings.csv")
    run = tmp_path / "run"
    sets = [arg for k, v in SMALL.items() for arg in ("--set", f"{k}={v}")]
    code = main(["train", "--train", str(csv), "--split", "strong", "--heldout", "30",
                 "--model", "mult-vae", "--beta-search", "--out", str(run), "--quiet", "--json",
                 *sets])
    assert code == 0
    search = json.loads((run / "beta_search.json").read_text())
    ndcgs = [r["ndcg@100"] for r in search["records"]]
    best = search["records"][int(np.argmax(ndcgs))]
    assert search["best_beta"] == best["beta"] and search["best_epoch"] == best["epoch"]
    spec = json.loads((run / "run.json").read_text())
    assert spec["params"]["anneal_cap"] == best["beta"]
    assert spec["params"]["anneal_epochs"] == 8.0
    assert spec["beta_search"]["best_beta"] == best["beta"]
    assert (run / "beta_search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the final training ran with the cap: no epoch's beta exceeds it
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 8
    assert max(h["beta"] for h in history) <= best["beta"] + 1e-12
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 8 and "ndcg@100" in metrics


def test_beta_search_with_early_stopping_searches_every_epoch_then_stops_early(tmp_path):
    """The search anneals over the whole run (no early stop, or beta would not reach 1); the
    training it configures stops early; both under the default automatic anneal length."""
    csv = _tiny_csv(tmp_path / "ratings.csv")
    run = tmp_path / "run"
    sets = [arg for k, v in {**SMALL, "epochs": 30, "lr": 0.05}.items() for arg in ("--set", f"{k}={v}")]
    assert MultVAE().config.total_anneal_steps == "auto"
    assert main(["train", "--train", str(csv), "--split", "strong", "--heldout", "30",
                 "--model", "mult-vae", "--beta-search", "--patience", "2", "--out", str(run),
                 "--quiet", *sets]) == 0
    search = json.loads((run / "beta_search.json").read_text())
    assert len(search["records"]) == 30 and search["records"][-1]["beta"] > 0.9
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped_early"] is (metrics["epochs"] < 30)
    assert metrics["epochs"] <= metrics["best_epoch"] + 2


def test_beta_search_is_for_mult_vae_only(tmp_path, capsys):
    csv = _tiny_csv(tmp_path / "ratings.csv")
    code = main(["train", "--train", str(csv), "--split", "strong", "--heldout", "30",
                 "--model", "mult-dae", "--beta-search", "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 2
    assert "--beta-search is for mult-vae only" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before any work


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ConfigError, match=r"pip install aerec\[plot\]"):
        check_beta_search("mult-vae")


def test_search_needs_validation_users():
    with pytest.raises(ConfigError, match="validation"):
        search_beta(tiny_interactions(), None, SMALL)
