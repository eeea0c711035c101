"""The command line with the rating models: train on u1 / random / time splits, evaluate,
recommend, and errors on one line."""

from __future__ import annotations

import json

import pytest

from aerec.cli import main


def _train(shared_data_dir, out, *args):
    return main(["train", "--data-dir", str(shared_data_dir), "--out", str(out), "--quiet",
                 "--json", *args])


@pytest.fixture(scope="module")
def u1_run(tmp_path_factory, shared_data_dir):
    run = tmp_path_factory.mktemp("runs") / "iautorec"
    code = _train(shared_data_dir, run, "--data", "ml-100k", "--split", "u1", "--model",
                  "i-autorec", "--set", "epochs=3", "--set", "hidden=32", "--set", "lam=10",
                  "--set", "lr=0.03")
    assert code == 0
    return run


def test_train_on_u1_writes_rmse_and_mae(u1_run):
    metrics = json.loads((u1_run / "metrics.json").read_text())
    assert metrics["n_ratings"] == 20_000  # every rating of u1.test
    assert 0.85 < metrics["rmse"] < 1.3 and 0.6 < metrics["mae"] < metrics["rmse"]
    assert metrics["epochs"] == 3 and 1 <= metrics["best_epoch"] <= 3
    assert "ndcg@100" not in metrics
    spec = json.loads((u1_run / "run.json").read_text())
    assert spec["split"] == {"kind": "u1", "seed": 98765, "validation_fraction": 0.1}
    assert spec["preprocess"]["min_user"] == 0 and spec["preprocess"]["threshold"] is None
    history = json.loads((u1_run / "history.json").read_text())
    assert all("val_rmse" in h for h in history)


def test_evaluate_reproduces_the_metrics(u1_run, capsys):
    assert main(["evaluate", str(u1_run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    metrics = json.loads((u1_run / "metrics.json").read_text())
    assert again["rmse"] == metrics["rmse"] and again["mae"] == metrics["mae"]


def test_recommend_for_a_user(u1_run, capsys):
    assert main(["recommend", str(u1_run), "--user", "1", "-n", "5", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["recommendations"]
    assert len(rows) == 5
    assert all(1.0 <= r["score"] <= 6.0 for r in rows)  # predicted ratings
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)


def test_random_split_with_the_deep_autoencoder(tmp_path, shared_data_dir):
    run = tmp_path / "deep"
    assert _train(shared_data_dir, run, "--data", "ml-100k", "--split", "random",
                  "--test-fraction", "0.2", "--seed", "4", "--model", "deep-ae",
                  "--set", "epochs=2", "--set", "hidden=32,16", "--set", "optimizer=adam",
                  "--set", "lr=0.003") == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_ratings"] == 20_000 and metrics["rmse"] < 1.5
    spec = json.loads((run / "run.json").read_text())
    assert spec["split"] == {"kind": "random", "seed": 4, "validation_fraction": 0.1,
                             "test_fraction": 0.2}


def test_time_split_with_biased_mf(tmp_path, shared_data_dir):
    run = tmp_path / "mf"
    assert _train(shared_data_dir, run, "--data", "ml-100k", "--split", "time", "--cutoff",
                  "1998-03-01", "--model", "biased-mf", "--set", "epochs=2", "--set", "batch_size=8192") == 0
    metrics = json.loads((run / "metrics.json").read_text())
    split = json.loads((run / "split" / "ids.json").read_text())["params"]
    assert split["cutoff_seconds"] == 888710400
    assert metrics["n_ratings"] > 1000 and metrics["rmse"] < 1.5


@pytest.mark.parametrize("args, message", [
    (["--data", "ml-100k", "--split", "time"], "needs --cutoff"),
    (["--data", "ml-latest-small", "--split", "u1"], "use --data ml-100k"),
    (["--data", "ml-100k", "--split", "u1", "--min-user", "5"], "used as published"),
    (["--data", "ml-100k", "--split", "random", "--test-fraction", "2"], "--test-fraction"),
])
def test_bad_split_options_are_one_line_errors(tmp_path, shared_data_dir, capsys, args, message):
    code = _train(shared_data_dir, tmp_path / "x", *args, "--model", "u-autorec")
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
