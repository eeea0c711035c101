"""One run, typed: RunSpec's defaults and checks, Python's run path, the refit that repeats its
selection run, and the rules of --out and --resume."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

import numpy as np
import pytest

import aerec
from aerec import RunSpec
from aerec.cli import main
from aerec.errors import ConfigError
from aerec.run_dir import RunDir
from aerec.runs import load_split, new_run, train_run
from tiny_runs import tiny_interactions

DAE = {"epochs": 3, "batch_size": 64, "latent": 8, "lr": 0.01, "device": "cpu"}
VAE = {"epochs": 12, "batch_size": 64, "latent": 8, "hidden": "32", "lr": 0.01, "device": "cpu"}


def _settings(params: dict) -> list[str]:
    return [arg for k, v in params.items() for arg in ("--set", f"{k}={v}")]


def _write_csv(path: Path, rows) -> Path:
    path.write_text("user,item,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r in rows))
    return path


@pytest.fixture(scope="module")
def given_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("given")
    data = tiny_interactions(n_users=200, seed=5)
    rows, cols = data.matrix.nonzero()
    test = np.random.default_rng(1).random(len(rows)) < 0.2
    for name, keep in (("train.csv", ~test), ("test.csv", test)):
        _write_csv(folder / name, [(data.user_ids[r], data.item_ids[c], 5)
                                   for r, c in zip(rows[keep], cols[keep])])
    return folder / "train.csv", folder / "test.csv"


@pytest.fixture(scope="module")
def own_file(tmp_path_factory) -> Path:
    """Your own data: the tiny genres data plus 7 customers with only 2 purchases each."""
    data = tiny_interactions(n_users=200, seed=2)
    rows, cols = data.matrix.nonzero()
    lines = [(data.user_ids[r], data.item_ids[c], 5) for r, c in zip(rows, cols)]
    lines += [(f"light{k}", data.item_ids[k], 5) for k in range(7)]
    lines += [(f"light{k}", data.item_ids[k + 1], 5) for k in range(7)]
    return _write_csv(tmp_path_factory.mktemp("own") / "orders.csv", lines)


# -- the spec -------------------------------------------------------------------------------------
def test_defaults_follow_the_data_and_the_split(tmp_path, given_files, own_file):
    paper = RunSpec.create("mult-vae", "ml-20m")
    assert (paper.preprocess.threshold, paper.preprocess.min_user) == (3.5, 5)
    assert (paper.split.kind, paper.split.n_heldout, paper.split.test_prop) == ("strong", 10000, 0.2)
    assert paper.training.patience is None and paper.training.refit is False
    assert paper.params["epochs"] == 200 and paper.params["total_anneal_steps"] == "auto"
    given = RunSpec.create("mult-vae", train=given_files[0], test=given_files[1])
    # LightGCN's protocol evaluates every test user: no count filter on given splits
    assert (given.split.kind, given.preprocess.min_user) == ("given", 0)
    assert given.training.patience == 20 and given.training.refit is True
    assert given.split.validation_fraction == 0.1
    own = RunSpec.create("ease", own_file)
    assert own.preprocess.min_user == 5 and own.preprocess.keep_users is True
    rating = RunSpec.create("u-autorec", train=given_files[0], test=given_files[1])
    assert rating.preprocess.threshold is None and rating.preprocess.min_user == 0
    assert RunSpec.create("blend", train=given_files[0], test=given_files[1]).training.refit is False


@pytest.mark.parametrize("kwargs, message", [
    ({"params": {"epochs": "2.5"}}, "epochs must be an integer"),
    ({"params": {"lamb": "1"}}, "unknown hyperparameter"),
    ({"params": {"lam": "-1"}}, "lam must not be negative"),
    ({"heldout": "1.0"}, "ambiguous"),
    ({"heldout": "-3"}, "--heldout"),
    ({"validation_fraction": 0.2}, "does not apply to the strong split"),
    ({"cutoff": "2005-01-01"}, "does not apply"),
    ({"seed": -1}, "seed"),
    ({"min_user": -1}, "min_user"),
    ({"min_rating": float("nan")}, "finite"),
    ({"refit": True}, "refit is for given splits"),
    ({"split": "u1"}, "fold of MovieLens 100K"),
])
def test_bad_values_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RunSpec.create("mult-dae", "ml-latest-small", **kwargs)


def test_the_spec_is_frozen_and_round_trips_through_json(given_files):
    spec = RunSpec.create("mult-vae", train=given_files[0], test=given_files[1],
                          params={"epochs": "7", "lr": "1e-3"}, seed=3)
    with pytest.raises(AttributeError):
        spec.model = "ease"  # type: ignore[misc]
    again = RunSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec and again.params["epochs"] == 7 and again.params["lr"] == 0.001
    with pytest.raises(ConfigError, match="split: unknown field"):
        RunSpec.from_json({**spec.to_json(), "split": {"kind": "given", "seeds": 1}})


# -- Python's run path ----------------------------------------------------------------------------
def test_a_cli_run_loaded_and_run_again_from_python_gives_the_same_numbers(tmp_path, fake_data):
    a, b = tmp_path / "A", tmp_path / "B"
    assert main(["train", "--data", "ml-100k", "--data-dir", str(fake_data), "--model",
                 "mult-dae", *_settings(DAE), "--quiet", "--out", str(a)]) == 0
    spec = RunSpec.load(a)
    assert spec.params["epochs"] == 3 and spec.data.dataset == "ml-100k"
    metrics = aerec.run(spec, b, progress=False)
    saved = json.loads((a / "metrics.json").read_text())
    assert metrics["ndcg@100"] == saved["ndcg@100"]
    assert json.loads((b / "metrics.json").read_text())["ndcg@100"] == saved["ndcg@100"]
    assert RunSpec.load(b) == spec


def test_run_json_records_what_resolved(tmp_path, fake_data):
    spec = RunSpec.create("mult-vae", "ml-100k", data_dir=fake_data, params={**VAE, "epochs": 2})
    new_run(tmp_path / "r", spec)
    resolved = RunSpec.load(tmp_path / "r").resolved
    split = load_split(tmp_path / "r" / "split")
    assert resolved["device"] == "cpu"
    assert resolved["items"] == split.train.n_items
    assert resolved["training_users"] == split.train.n_users
    batches = -(-split.train.n_users // VAE["batch_size"])
    assert resolved["total_anneal_steps"] == round(2 * batches * 200_000 / 46_800)


# -- the refit ------------------------------------------------------------------------------------
def test_the_refit_repeats_the_selection_run_and_keeps_its_epochs(tmp_path, given_files):
    out = tmp_path / "refit"
    assert main(["train", "--train", str(given_files[0]), "--test", str(given_files[1]),
                 "--model", "mult-vae", *_settings(VAE), "--choose", "false", "--quiet", "--out", str(out)]) == 0
    history = json.loads((out / "history.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    selection = {h["epoch"]: h for h in history if "phase" not in h}
    refit = [h for h in history if h.get("phase") == "refit"]
    assert len(refit) == metrics["best_epoch"] == metrics["refit_epochs"] >= 1
    for record in refit:  # the same anneal schedule: beta equal at every epoch
        assert record["beta"] == pytest.approx(selection[record["epoch"]]["beta"], rel=1e-12)
    batches = -(-load_split(out / "split").train.n_users // VAE["batch_size"])
    steps = RunSpec.load(out).resolved["total_anneal_steps"]
    assert steps == round(VAE["epochs"] * batches * 200_000 / 46_800)


def test_popularity_metrics_of_a_refit_count_the_rows_it_learned(tmp_path, given_files):
    from aerec.metrics import item_popularity
    from aerec.runs import evaluate_run

    out = tmp_path / "pop"
    assert main(["train", "--train", str(given_files[0]), "--test", str(given_files[1]),
                 "--model", "ease", "--quiet", "--out", str(out)]) == 0
    split = load_split(out / "split")
    assert split.test.fold_in.nnz > split.train.nnz
    ours = evaluate_run(out, ks=(10,), metrics=("popularity",))["popularity@10"]
    from aerec.models import Recommender
    from aerec.evaluation import evaluate_ranking

    model = Recommender.load(out / "model")
    learned = evaluate_ranking(model.score_tensor, split.test.fold_in.matrix,
                               split.test.targets.matrix, ks=(10,), metrics=("popularity",),
                               item_popularity=item_popularity(split.test.fold_in.matrix))
    carved = evaluate_ranking(model.score_tensor, split.test.fold_in.matrix,
                              split.test.targets.matrix, ks=(10,), metrics=("popularity",),
                              item_popularity=item_popularity(split.train.matrix))
    assert ours == learned["popularity@10"] != carved["popularity@10"]


def test_the_beta_search_keeps_an_explicit_anneal_length(tmp_path, fake_data):
    out = tmp_path / "beta"
    assert main(["train", "--data", "ml-100k", "--data-dir", str(fake_data), "--model",
                 "mult-vae", *_settings({**VAE, "epochs": 2, "total_anneal_steps": 200000}),
                 "--beta-search", "--quiet", "--out", str(out)]) == 0
    spec = RunSpec.load(out)
    assert spec.params["total_anneal_steps"] == 200000 and spec.params["anneal_epochs"] is None
    assert spec.resolved["total_anneal_steps"] == 200000
    records = json.loads((out / "beta_search.json").read_text())["records"]
    assert records[-1]["beta"] < 0.01  # 200,000 steps: beta has barely left 0


# -- users are not dropped silently ---------------------------------------------------------------
def test_light_users_of_your_own_data_are_trained_on_and_recommended_for(tmp_path, own_file, capsys):
    out = tmp_path / "own"
    assert main(["train", "--data", str(own_file), "--model", "ease", "--quiet",
                 "--out", str(out)]) == 0
    assert "7 users with fewer than 5 interactions are trained on" in capsys.readouterr().err
    split = load_split(out / "split")
    assert {f"light{k}" for k in range(7)} <= set(split.train.user_ids)
    held = set(split.validation.fold_in.user_ids) | set(split.test.fold_in.user_ids)
    assert not any(u.startswith("light") for u in held)
    assert RunSpec.load(out).resolved["users_not_evaluated"] == 7
    capsys.readouterr()
    assert main(["recommend", str(out), "--user", "light3", "-n", "3", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert len(answer["recommendations"]) == 3


def test_a_filter_that_removes_users_says_how_many(tmp_path, capsys):
    rows = [(u, i, 5) for u in range(30) for i in range(6)] + [(99, 1, 5), (99, 2, 2)]
    data = _write_csv(tmp_path / "d.csv", rows)
    assert main(["train", "--train", str(data), "--test", str(data), "--model", "ease",
                 "--min-user", "3", "--quiet", "--out", str(tmp_path / "r")]) == 0
    assert "1 users, 0 items" in capsys.readouterr().err


# -- --out and --resume ---------------------------------------------------------------------------
def _tiny_train(out: Path, *args: str, files=None) -> int:
    return main(["train", "--train", str(files[0]), "--test", str(files[1]), "--model",
                 "mult-dae", *_settings(DAE), "--quiet", "--out", str(out), *args])


def test_a_folder_that_is_not_a_run_is_never_written_into(tmp_path, given_files, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "metrics.json").write_text("my own numbers")
    before = sorted(p.name for p in folder.iterdir())
    capsys.readouterr()
    for extra in ((), ("--overwrite",)):
        assert _tiny_train(folder, *extra, files=given_files) == 2
        assert "not an aerec run's" in capsys.readouterr().err
        assert (folder / "metrics.json").read_text() == "my own numbers"
        assert sorted(p.name for p in folder.iterdir()) == before
    link = tmp_path / "link"
    link.symlink_to(folder)
    assert _tiny_train(link, files=given_files) == 2
    assert (folder / "metrics.json").read_text() == "my own numbers"


def test_overwrite_replaces_a_run_and_only_a_run(tmp_path, given_files, capsys):
    out = tmp_path / "r"
    assert _tiny_train(out, files=given_files) == 0
    capsys.readouterr()
    assert _tiny_train(out, files=given_files) == 2
    assert "--overwrite" in capsys.readouterr().err
    (out / "model" / "model.json").touch()
    assert _tiny_train(out, "--seed", "5", "--overwrite", files=given_files) == 0
    assert RunSpec.load(out).split.seed == 5


def test_a_half_made_run_is_accepted_by_the_same_command(tmp_path, given_files):
    out = tmp_path / "half"
    (out / "split").mkdir(parents=True)
    (out / "split" / "train.npz").write_bytes(b"partial")
    assert _tiny_train(out, files=given_files) == 0
    assert (out / "metrics.json").is_file()


@pytest.mark.parametrize("args, flag", [
    (["--set", "lr=0.5"], "--set lr=0.5"),
    (["--set", "epochs=9"], "--set epochs=9"),
    (["--model", "ease"], "--model ease"),
    (["--patience", "3"], "--patience"),
    (["--data", "ml-100k"], "--data"),
    (["--out", "elsewhere"], "--out"),
    (["--min-user", "2"], "--min-user"),
])
def test_resume_refuses_options_that_ask_for_another_run(tmp_path, given_files, capsys, args, flag):
    out = tmp_path / "r"
    assert _tiny_train(out, files=given_files) == 0
    (out / "metrics.json").unlink()
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(out), *args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert flag in err and len(err.splitlines()) == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == files


def test_resume_accepts_the_run_s_own_values(tmp_path, given_files):
    out = tmp_path / "r"
    assert _tiny_train(out, files=given_files) == 0
    (out / "metrics.json").unlink()
    assert main(["train", "--resume", str(out), "--set", "lr=0.01", "--model", "mult-dae",
                 "--quiet"]) == 0


def test_two_trainings_of_one_run_cannot_run_at_once(tmp_path, given_files):
    out = tmp_path / "r"
    new_run(out, RunSpec.create("mult-dae", train=given_files[0], test=given_files[1],
                                params=DAE))
    with open(out / RunDir.LOCK, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process's training
        with pytest.raises(ConfigError, match="another aerec process is training this run"):
            train_run(out)
    assert not (out / "metrics.json").exists()
    train_run(out)  # released: the run trains
    assert (out / "metrics.json").is_file()


def test_a_checkpoint_whose_epoch_disagrees_with_its_history_is_refused(tmp_path, given_files):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    from aerec.errors import DataError

    out = tmp_path / "r"
    assert _tiny_train(out, "--refit", "false", files=given_files) == 0
    (out / "metrics.json").unlink()
    ckpt = out / "checkpoint.safetensors"
    with safe_open(str(ckpt), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(ckpt))
    skeleton = json.loads(meta["skeleton"])
    entries = dict((k, i) for i, (k, _) in enumerate(skeleton["__dict__"]))
    assert skeleton["__dict__"][entries["epoch"]][1] == DAE["epochs"]
    for value in (-5, 5, 2):  # 2: within the run's epochs, but not its history's length
        items = [list(pair) for pair in skeleton["__dict__"]]
        items[entries["epoch"]][1] = value
        edited = {**meta, "skeleton": json.dumps({"__dict__": items})}
        save_file(tensors, str(ckpt), metadata=edited)
        with pytest.raises(DataError, match="does not match its history"):
            train_run(out, resume=True)
    assert not (out / "metrics.json").exists()


# -- hyperparameters chosen on validation ---------------------------------------------------------
def test_the_choice_is_on_for_own_data_and_given_splits_only(given_files, own_file):
    assert RunSpec.create("ease", train=given_files[0], test=given_files[1]).training.choose
    assert RunSpec.create("ease", own_file).training.choose
    assert not RunSpec.create("ease", "ml-20m").training.choose  # the paper's values
    assert not RunSpec.create("ease", own_file, params={"lam": 50}).training.choose
    assert not RunSpec.create("mult-dae", own_file).training.choose  # nothing to choose
    with pytest.raises(ConfigError, match="nothing is chosen"):
        RunSpec.create("mult-dae", own_file, choose=True)


def test_a_given_split_run_records_the_lam_it_chose(tmp_path, given_files, capsys):
    out = tmp_path / "chosen"
    assert main(["train", "--train", str(given_files[0]), "--test", str(given_files[1]),
                 "--model", "ease", "--quiet", "--out", str(out)]) == 0
    assert "choice on validation" in capsys.readouterr().err
    saved = json.loads((out / "run.json").read_text())
    lam = saved["choice"]["params"]["lam"]
    assert len(lam["tried"]) == len(lam["validation"]) >= 5
    assert lam["chosen"] in lam["tried"] and saved["params"]["lam"] == lam["chosen"]
    assert lam["validation"][lam["tried"].index(lam["chosen"])] == max(lam["validation"])
    # a re-run of the recorded run does not choose again, and gives the same numbers
    spec = RunSpec.load(out)
    again = aerec.run(spec, tmp_path / "again", progress=False)
    assert again["ndcg@100"] == json.loads((out / "metrics.json").read_text())["ndcg@100"]
    assert json.loads((tmp_path / "again" / "run.json").read_text())["choice"] == saved["choice"]
    off = tmp_path / "off"
    assert main(["train", "--train", str(given_files[0]), "--test", str(given_files[1]),
                 "--model", "ease", "--choose", "false", "--quiet", "--out", str(off)]) == 0
    assert "choice" not in json.loads((off / "run.json").read_text())
