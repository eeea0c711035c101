"""Tuning: search spaces, pinned values, validation-only trials, pruning, resume after a kill."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

import aerec.evaluation
from aerec.data.splits import strong_generalization
from aerec.errors import ConfigError
from aerec.models import EASE, EDLAE, MultDAE, MultVAE
from aerec.persistence import read_json
from aerec.tuning import make_objective, run_study, tune

from tiny_runs import tiny_interactions

pytestmark = [
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta"),
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]

#: Small networks and few epochs: the tiny data needs no more, and the tests stay quick.
SMALL = {"epochs": "3", "hidden": "16", "latent": "8", "batch_size": "64", "device": "cpu"}


@pytest.fixture(scope="module", autouse=True)
def quiet_optuna():
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(level)


@pytest.fixture(scope="module")
def split():
    return strong_generalization(tiny_interactions(), 30, seed=1)


@pytest.mark.parametrize("model_cls", [MultVAE, MultDAE, EASE, EDLAE])
def test_every_point_of_a_search_space_is_a_valid_model(model_cls):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        params = model_cls.search_space(trial)
        assert set(params) == set(trial.params)
        model_cls(**params)  # raises ConfigError on an invalid value
        study.tell(trial, 0.0)


def test_pinned_values_hold_in_every_trial_and_are_not_searched(split):
    study = run_study(MultVAE, split.train, split.validation, n_trials=3, storage=None,
                      study_name="pinned", fixed=SMALL)
    for trial in study.trials:
        assert not set(SMALL) & set(trial.params)
        used = trial.user_attrs["params"]
        assert (used["epochs"], used["hidden"], used["latent"], used["batch_size"]) == (3, [16], 8, 64)
        assert used["lr"] == trial.params["lr"]


def test_trials_see_validation_users_only_and_report_each_epoch(split, monkeypatch):
    seen = []
    real = aerec.evaluation.evaluate_ranking

    def spy(score_fn, fold_in, targets, *args, **kwargs):
        seen.append((fold_in.shape, fold_in.nnz, targets.nnz))
        return real(score_fn, fold_in, targets, *args, **kwargs)

    monkeypatch.setattr(aerec.evaluation, "evaluate_ranking", spy)
    study = run_study(MultVAE, split.train, split.validation, n_trials=2, storage=None,
                      study_name="validation", fixed=SMALL)
    validation = (split.validation.fold_in.matrix.shape, split.validation.fold_in.matrix.nnz,
                  split.validation.targets.matrix.nnz)
    assert len(seen) == 2 * 3  # one evaluation per epoch per trial ...
    assert set(seen) == {validation}  # ... always of the validation users
    for trial in study.trials:
        # the value is the NDCG@100 of the epoch the model kept: its best reported epoch
        assert sorted(trial.intermediate_values) == [1, 2, 3]
        assert trial.value == max(trial.intermediate_values.values())


def test_a_pruned_trial_stops_at_the_epoch_it_was_pruned(split):
    always = optuna.pruners.ThresholdPruner(lower=2.0)  # NDCG never reaches 2: prune at epoch 1
    study = run_study(MultVAE, split.train, split.validation, n_trials=2, storage=None,
                      study_name="pruned", fixed=SMALL, pruner=always)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    assert all(list(t.intermediate_values) == [1] for t in study.trials)
    none = run_study(MultVAE, split.train, split.validation, n_trials=2, storage=None,
                     study_name="unpruned", fixed=SMALL, pruner=always, prune=False)
    assert [t.state for t in none.trials] == [TrialState.COMPLETE] * 2


def test_objective_refuses_an_unknown_pinned_name(split):
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        make_objective(MultVAE, split.train, split.validation, {"epoch": 3})


def _spec(data_dir: Path) -> dict:
    return {"model": "mult-vae", "params": {},
            "data": {"dataset": "ml-100k", "data_dir": str(data_dir)},
            "preprocess": {"threshold": 3.5, "min_user": 5, "min_item": 0},
            "split": {"kind": "strong", "n_heldout": 30, "seed": 1}}


def test_tune_retrains_the_best_trial_as_a_run_and_reports(fake_data, tmp_path):
    out = tmp_path / "study"
    result = tune(_spec(fake_data), out, n_trials=3, fixed=SMALL)
    study = optuna.load_study(study_name=result.study_name, storage=result.storage)
    assert result.n_trials == 3 and len(study.trials) == 3
    assert result.best_value == study.best_value
    # The best run is an ordinary run directory that reproduces the best trial exactly.
    run = result.run_dir
    assert run == out / "best"
    spec = read_json(run / "run.json")
    assert spec["format"] == "aerec-run" and spec["params"] == study.best_trial.user_attrs["params"]
    history = read_json(run / "history.json")
    assert max(h["val_ndcg@100"] for h in history) == pytest.approx(study.best_value, rel=1e-6)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for key in ("loss", "nll", "kl", "beta", "val_ndcg@100", "seconds"):
        assert all(np.isfinite(h[key]) for h in history), key
    assert "ndcg@100" in read_json(run / "metrics.json")
    assert (run / "history.png").is_file()
    report = (out / "report.md").read_text()
    assert f"| {study.best_trial.number} | {study.best_value:.4f} | 3 |" in report
    for png in ("history.png", "importance.png", "intermediate.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    # Run again: nothing left to do, the same answer.
    again = tune(_spec(fake_data), out, n_trials=3, fixed=SMALL)
    assert (again.best_trial, again.n_trials) == (result.best_trial, 3)
    # Other settings in the same folder are refused rather than mixed in.
    with pytest.raises(ConfigError, match="holds a study with other settings"):
        tune(_spec(fake_data), out, n_trials=3, fixed={**SMALL, "epochs": "4"})


def test_a_closed_form_study_reports_no_epochs_and_draws_no_epoch_curves(fake_data, tmp_path):
    out = tmp_path / "ease"
    result = tune({**_spec(fake_data), "model": "ease"}, out, n_trials=2, retrain=False)
    study = optuna.load_study(study_name=result.study_name, storage=result.storage)
    assert all(not t.intermediate_values for t in study.trials)
    report = (out / "report.md").read_text()
    assert f"| {study.best_trial.number} | {study.best_value:.4f} | – |" in report
    assert (out / "history.png").is_file() and not (out / "intermediate.png").exists()


def test_tune_command_resumes_after_a_kill(fake_data, tmp_path):
    out = tmp_path / "study"
    command = [sys.executable, "-m", "aerec.cli", "tune", "--data", "ml-100k", "--data-dir",
               str(fake_data), "--heldout", "30", "--model", "mult-vae", "--trials", "8",
               "--out", str(out), "--no-retrain", "--quiet", *(f"--set={k}={v}" for k, v in SMALL.items())]
    # one thread each: tiny matrices gain nothing from more, and the machine may be shared
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while _finished(storage) < 2:
            assert first.poll() is None, first.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the study made no progress"
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    before = {t.number: t for t in _trials(storage)}
    done_before = [t for t in before.values() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 2 <= len(done_before) < 8
    interrupted = [t for t in before.values() if t.state == TrialState.RUNNING]
    if any("owner" not in t.user_attrs for t in interrupted):
        # Killed between creating a trial and recording its owner (the kill comes as a trial
        # ends, so this is common here): such a trial counts as abandoned after a grace period.
        from aerec.tuning import _UNOWNED_GRACE_SECONDS

        time.sleep(_UNOWNED_GRACE_SECONDS)

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stderr
    after = {t.number: t for t in _trials(storage)}
    finished = [t for t in after.values() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 8
    for t in done_before:  # kept, not redone
        assert after[t.number].state == t.state and after[t.number].value == t.value
    for t in interrupted:  # marked failed and tried again with the parameters it had drawn
        assert after[t.number].state == TrialState.FAIL
        retries = [r for r in after.values() if r.user_attrs.get("retry_of") == t.number]
        assert len(retries) == (1 if t.params else 0)  # (killed before drawing any: nothing to retry)
        for retry in retries:
            assert {k: retry.params[k] for k in t.params} == t.params
    assert sorted(after) == list(range(len(after)))  # numbering continued


def _trials(storage: str) -> list:
    summaries = optuna.get_all_study_summaries(storage)
    if not summaries:
        return []
    return optuna.load_study(study_name=summaries[0].study_name, storage=storage).get_trials()


def _finished(storage: str) -> int:
    """Finished trials, read without Optuna: opening the storage with Optuna while the other
    process creates it could race with its creation of the tables."""
    path = Path(storage.removeprefix("sqlite:///"))
    if not path.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            return db.execute(
                "SELECT COUNT(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')").fetchone()[0]
    except sqlite3.Error:  # no tables yet
        return 0


def test_tune_command_needs_its_extra(monkeypatch, capsys):
    from aerec.cli import main

    monkeypatch.setitem(sys.modules, "optuna", None)
    assert main(["tune", "--data", "ml-100k", "--model", "mult-vae", "--out", "x"]) == 2
    assert "pip install 'aerec[tune]'" in capsys.readouterr().err


def test_tune_command_refuses_a_bad_pinned_value(fake_data, tmp_path, capsys):
    from aerec.cli import main

    code = main(["tune", "--data", "ml-100k", "--data-dir", str(fake_data), "--model", "mult-vae",
                 "--out", str(tmp_path / "s"), "--set", "latent=many"])
    assert code == 2
    assert "latent must be an integer" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_running_trials_of_dead_or_unrecorded_owners_are_failed_and_others_kept():
    import datetime
    import socket

    from aerec import tuning

    study = optuna.create_study()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    host = socket.gethostname()
    owners = {"dead": {"host": host, "pid": int(dead.stdout)},
              "live": {"host": host, "pid": os.getppid()},
              "other machine": {"host": "not-" + host, "pid": int(dead.stdout)}}
    trials = {}
    for name, owner in owners.items():
        trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2)})
        trial.set_user_attr("owner", owner)
        trials[name] = trial
    trials["unrecorded"] = study.ask()  # killed before it recorded its owner, or just started

    def states():
        return {name: study.get_trials()[t.number].state for name, t in trials.items()}

    tuning._recover_abandoned(study, study._storage)
    assert states() == {"dead": TrialState.FAIL, "live": TrialState.RUNNING,
                        "other machine": TrialState.RUNNING, "unrecorded": TrialState.RUNNING}
    # the dead owner's drawn parameters are queued to be tried again
    assert [t.system_attrs["fixed_params"] for t in study.get_trials(
        states=(TrialState.WAITING,))] == [trials["dead"].params]
    # once the grace period has passed, an owner-less trial counts as abandoned
    later = datetime.datetime.now() + datetime.timedelta(seconds=tuning._UNOWNED_GRACE_SECONDS + 1)
    tuning._recover_abandoned(study, study._storage, now=later)
    assert states()["unrecorded"] == TrialState.FAIL and states()["live"] == TrialState.RUNNING


# -- several sessions on one storage --------------------------------------------------------------
def _concurrent_sessions(run_study_fn, split, storage: str, n_sessions: int = 2,
                         n_trials: int = 6) -> None:
    """``n_sessions`` threads, each with its own study object, start ``run_study_fn`` at once."""
    import threading

    barrier = threading.Barrier(n_sessions)
    errors: list[BaseException] = []

    def session(k: int) -> None:
        try:
            barrier.wait()
            run_study_fn(EASE, split.train, split.validation, n_trials=n_trials,
                         storage=storage, study_name="shared", seed=k)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(k,)) for k in range(n_sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors


def _slow_objective(monkeypatch, seconds: float = 0.05) -> None:
    """EASE trials take milliseconds; a little longer makes the sessions overlap for certain."""
    from aerec import tuning

    real = tuning.make_objective

    def make(*args, **kwargs):
        objective = real(*args, **kwargs)

        def slow(trial):
            time.sleep(seconds)
            return objective(trial)
        return slow

    monkeypatch.setattr(tuning, "make_objective", make)


@pytest.mark.parametrize("n_sessions", [2, 3])
def test_concurrent_sessions_end_with_exactly_the_trials_asked(split, tmp_path, monkeypatch,
                                                                n_sessions):
    # Issue 15, item 4: two `aerec tune --trials 6` on one storage ended with 12 finished trials.
    _slow_objective(monkeypatch)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    _concurrent_sessions(run_study, split, storage, n_sessions=n_sessions)
    study = optuna.load_study(study_name="shared", storage=storage)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6
    # Every trial beyond them was stopped before it ran: marked surplus, with no value.
    others = [t for t in study.trials if t not in finished]
    assert all(t.user_attrs.get("surplus") and t.value is None for t in others)
    assert all(t.state == TrialState.FAIL for t in others)
    # The report leaves the surplus out.
    from aerec.tuning import write_tuning_report

    report = write_tuning_report(study, tmp_path / "report").read_text()
    assert "trials: 6 complete." in report


def test_a_queued_retry_is_run_rather_than_a_new_trial(split, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="q", storage=storage, direction="maximize")
    study.enqueue_trial({"lam": 123.0})
    run_study(EASE, split.train, split.validation, n_trials=1, storage=storage, study_name="q")
    trials = optuna.load_study(study_name="q", storage=storage).trials
    assert [(t.state, t.params["lam"]) for t in trials] == [(TrialState.COMPLETE, 123.0)]
