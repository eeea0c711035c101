"""Hyperparameter search with Optuna (``aerec[tune]``), judged on validation users only.

Each model declares its search space next to its code, as ``search_space(trial) -> dict`` (see
:meth:`aerec.models.vae.MultVAE.search_space`). A study:

1. splits the data once and keeps the split in ``OUT/split`` (so every trial, and a resumed study,
   sees the same users);
2. runs trials that train on the training users and are scored by the model's selection metric
   (validation NDCG@100, or RMSE for rating models) on the *validation* users; the test users are
   never given to a trial;
3. prunes a trial whose per-epoch validation figure falls below the median of earlier trials at
   the same epoch (Optuna's median pruner, after five trials);
4. keeps every trial in an Optuna storage (``sqlite:///OUT/study.db`` by default), so running the
   same command again resumes the study: trials that a killed process left running are marked
   failed and tried again with the same parameters, and only the missing trials are run. They
   are counted against the storage before each new trial, so that sessions running at once on
   one storage end with exactly the number asked for (:func:`run_trials`);
5. retrains the best configuration as an ordinary run directory, ``OUT/best``, evaluated on the
   test users like any ``aerec train`` run;
6. writes a report: ``OUT/report.md`` (the best trials) and Optuna's plots ``history.png``,
   ``importance.png`` and ``intermediate.png``.

``fixed`` (``--set name=value``) pins a hyperparameter for every trial: the search space's
suggestion of that name is answered with the pinned value and not recorded as a searched parameter.
"""

from __future__ import annotations

import datetime
import math
import os
import shutil
import socket
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aerec.config import config_to_dict, make_config
from aerec.data.splits import HeldOut, Split
from aerec.errors import ConfigError, TrainingDivergedError
from aerec.extras import require
from aerec.models import Recommender, get_model_class
from aerec.persistence import read_json, write_json
from aerec.run_dir import RunDir
from aerec.study_storage import check_storage, open_study, storage_errors
from aerec.run_spec import RunSpec
from aerec.runs import (evaluate_model, load_split, make_split, resolve, save_split, train_run,
                        write_run)
from aerec.training import Trainer

STUDY_FILE = "tune.json"
#: Trials before the pruner starts comparing, and epochs a trial always gets.
PRUNER_STARTUP_TRIALS = 5
PRUNER_WARMUP_EPOCHS = 1


@dataclass
class TuneResult:
    """What :func:`tune` did."""

    study_name: str
    storage: str
    n_trials: int
    best_value: float
    best_params: dict[str, Any]
    best_trial: int
    run_dir: Path | None
    report: Path


# -- the objective ----------------------------------------------------------------------------------
class _PinnedTrial:
    """A trial whose ``suggest_*`` returns the pinned value for a pinned name (others pass on)."""

    def __init__(self, trial: Any, pinned: dict[str, Any]) -> None:
        self._trial = trial
        self._pinned = pinned

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return attr

        def suggest(param: str, *args: Any, **kwargs: Any) -> Any:
            if param in self._pinned:
                return self._pinned[param]
            return attr(param, *args, **kwargs)

        return suggest


def pinned_values(model_cls: type[Recommender], fixed: dict[str, Any]) -> dict[str, Any]:
    """``fixed`` converted to the types of the model's config (``ConfigError`` when invalid)."""
    config = make_config(model_cls.Config, fixed, owner=model_cls.name)
    return {name: getattr(config, name) for name in fixed}


def search_space_of(model_cls: type[Recommender]) -> Callable[[Any], dict[str, Any]]:
    """The model's ``search_space``, or a ``ConfigError`` saying it has none."""
    space = getattr(model_cls, "search_space", None)
    if space is None:
        raise ConfigError(f"{model_cls.name} declares no search space (a search_space(trial) "
                          "method next to its code); tune another model or add one")
    return space


def make_objective(model_cls: type[Recommender], train: Any, validation: HeldOut,
                   fixed: dict[str, Any] | None = None, *, prune: bool = True
                   ) -> Callable[[Any], float]:
    """The function Optuna optimises: train one configuration, score it on ``validation``.

    Only the training users and the validation users are given to it, never the test users.
    Every epoch's validation figure is reported to the trial, which may be pruned there.
    """
    optuna = require("optuna", "tune", "tuning")
    space = search_space_of(model_cls)
    pinned = pinned_values(model_cls, fixed or {})
    key = f"val_{getattr(model_cls, 'selection_metric', 'ndcg@100')}"

    def objective(trial: Any) -> float:
        # One write, so that a kill cannot leave a trial with a pid but no host (or the reverse).
        trial.set_user_attr("owner", {"host": socket.gethostname(), "pid": os.getpid(),
                                      "process": _PROCESS_TOKEN})
        params = {**space(_PinnedTrial(trial, pinned)), **pinned}
        model = model_cls(**params)
        trial.set_user_attr("params", config_to_dict(model.config))  # JSON, as stored on disk

        def report(record: dict[str, Any]) -> None:
            value = record.get(key)
            if not _finite(value):
                return
            trial.report(float(value), int(record["epoch"]))
            if prune and trial.should_prune():
                raise optuna.TrialPruned(f"{key} {value:.4f} at epoch {record['epoch']}")

        try:
            Trainer(callbacks=(report,)).fit(model, train, validation)
        except TrainingDivergedError:
            if getattr(model, "best_epoch_", None) is None:
                raise  # nothing was selected: the trial fails, the study goes on
        return selection_value(model, validation, key)

    return objective


def selection_value(model: Recommender, validation: HeldOut, key: str) -> float:
    """The validation figure of the epoch the model kept (evaluated afresh without a history)."""
    history = getattr(model, "history_", None) or []
    best = getattr(model, "best_epoch_", None)
    for record in history:
        if record.get("epoch") == best and _finite(record.get(key)):
            return float(record[key])
    return float(evaluate_model(model, validation)[key.removeprefix("val_")])


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- the study ------------------------------------------------------------------------------------
def run_study(model_cls: type[Recommender], train: Any, validation: HeldOut, *, n_trials: int,
              storage: str | None, study_name: str, fixed: dict[str, Any] | None = None,
              prune: bool = True, seed: int = 0, pruner: Any = None,
              callbacks: tuple[Callable[[Any, Any], None], ...] = ()) -> Any:
    """Create or resume a study and run it until it has ``n_trials`` finished trials.

    Finished means complete or pruned. Trials left running by a process that no longer exists
    (a killed run) are marked failed and their parameters queued again. ``storage`` is an Optuna
    storage URL (``None``: in memory, not resumable); ``pruner`` replaces the median pruner.

    Returns
    -------
    optuna.study.Study
    """
    optuna = require("optuna", "tune", "tuning")
    if n_trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {n_trials}")
    _check_sampler_seed(seed)
    direction = "maximize" if getattr(model_cls, "selection_larger_is_better", True) else "minimize"
    pruner = pruner or optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS,
                                                   n_warmup_steps=PRUNER_WARMUP_EPOCHS)
    with storage_errors(storage):
        store, study = open_study(storage, study_name, direction, pruner)
    _recover_abandoned(study, store)
    # A fresh sampler seed per session: a resumed study must not replay the first random draws.
    study.sampler = optuna.samplers.TPESampler(seed=(seed + len(study.trials)) % 2**32)
    if len(finished_trials(study)) < n_trials:
        run_trials(study, make_objective(model_cls, train, validation, fixed, prune=prune),
                   n_trials, callbacks)
    return study


def run_trials(study: Any, objective: Callable[[Any], float], n_trials: int,
               callbacks: tuple[Callable[[Any, Any], None], ...] = ()) -> None:
    """Run trials until ``study`` has ``n_trials`` finished ones, counted before each new trial.

    Several sessions may share one storage (two ``aerec tune`` commands on one ``--storage``).
    Counting only at the start let each of them run all the missing trials. Here each new trial is
    created first, then compared with the trials the storage created before it: when those
    already claim ``n_trials`` (finished, running or queued), the new one is surplus: it is
    marked failed with the user attribute ``surplus`` without being run, and this session stops.
    The storage numbers trials in the order it creates them, so of two sessions that create a
    trial at the same moment, the later one yields. A trial that diverges fails and the study
    goes on; any other exception fails the trial and ends the session.
    """
    from optuna.trial import TrialState

    while len(finished_trials(study)) < n_trials:
        trial = study.ask()
        if _claimed_before(study, trial._trial_id) >= n_trials:
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
            if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                return
            continue  # a queued retry is left: the next ask takes it
        frozen = _run_trial(study, trial, objective)
        for callback in callbacks:
            callback(study, frozen)


def _claimed_before(study: Any, trial_id: int) -> int:
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    return sum(t._trial_id < trial_id for t in study.get_trials(deepcopy=False, states=states))


def _run_trial(study: Any, trial: Any, objective: Callable[[Any], float]) -> Any:
    """Run ``objective`` on ``trial`` and record how it ended; returns the finished trial."""
    import optuna
    from optuna.trial import TrialState

    try:
        value = objective(trial)
    except optuna.TrialPruned:
        return study.tell(trial, state=TrialState.PRUNED)
    except TrainingDivergedError:
        return study.tell(trial, state=TrialState.FAIL)  # this trial failed; the study goes on
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)
        raise
    return study.tell(trial, value)


def finished_trials(study: Any) -> list[Any]:
    """Complete and pruned trials (those that count towards ``n_trials``)."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def _recover_abandoned(study: Any, store: Any, now: datetime.datetime | None = None) -> None:
    from optuna.trial import TrialState

    host = socket.gethostname()
    now = now or datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("owner")
        if not isinstance(owner, dict):
            # Killed between creating the trial and recording its owner; a live process records
            # it within milliseconds, so one that has not after a while never will.
            started = trial.datetime_start or now
            if (now - started).total_seconds() < _UNOWNED_GRACE_SECONDS:
                continue
        elif owner.get("host") != host or _alive(owner.get("pid"), owner.get("process")):
            continue  # another live process (or machine) owns it
        store.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


#: Seconds after which a running trial that never recorded its owner counts as abandoned.
_UNOWNED_GRACE_SECONDS = 10.0


def _alive(pid: Any, token: Any = None) -> bool:
    if not isinstance(pid, int):
        return False
    if pid == os.getpid():
        # Another session of this very process (a thread) is alive; a trial of an earlier
        # process that had the same pid (pids are reused, in containers often) is not.
        return token == _PROCESS_TOKEN
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Tells this process from an earlier one that had the same pid.
_PROCESS_TOKEN = uuid.uuid4().hex


def _check_sampler_seed(seed: Any) -> None:
    """The TPE sampler's seed seeds NumPy, which takes 0 to 2**32 - 1."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"--sampler-seed must be an integer from 0 to {2**32 - 1}, got {seed!r}")


# -- the command ----------------------------------------------------------------------------------
def tune(spec: RunSpec, out_dir: str | Path, *, n_trials: int, storage: str | None = None,
         study_name: str | None = None, fixed: dict[str, Any] | None = None, prune: bool = True,
         seed: int = 0, retrain: bool = True,
         callbacks: tuple[Callable[[Any, Any], None], ...] = ()) -> TuneResult:
    """Run (or resume) a study for a run spec, write its report and retrain the best trial.

    Parameters
    ----------
    spec : RunSpec or dict
        The run (model, data, preprocessing, split), or its ``run.json`` form; its
        hyperparameters are replaced by the search space's and ``fixed``.
    out_dir : str or Path
        Where the split, the default storage, the report and ``best/`` go.
    n_trials : int
        Finished trials the study should have (counting those of earlier sessions).
    storage : str, optional
        An Optuna storage URL; default ``sqlite:///OUT/study.db``.
    study_name : str, optional
        Default ``<model>-<dataset>``.
    fixed : dict, optional
        Hyperparameters pinned for every trial (strings are converted).
    prune : bool
        Prune poor trials by their per-epoch validation figure.
    seed : int
        Seed of the sampler.
    retrain : bool
        Retrain the best configuration into ``OUT/best``.
    """
    from aerec.reports import dataset_name

    from aerec.runs import as_spec

    spec = as_spec(spec)
    out = Path(out_dir)
    fixed = dict(fixed or {})
    model_cls = get_model_class(spec.model)
    search_space_of(model_cls)
    pinned_values(model_cls, fixed)  # refuse a bad --set before any work
    _check_sampler_seed(seed)  # a bad --sampler-seed
    check_storage(storage)  # and a bad --storage
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    study_name = study_name or f"{spec.model}-{dataset_name(spec)}"
    base = {k: v for k, v in spec.to_json().items() if k not in ("params", "resolved")}
    split = _prepare(out, spec, {"spec": base, "fixed": fixed, "study_name": study_name,
                                 "storage": storage})
    study = run_study(model_cls, split.train, split.validation, n_trials=n_trials, storage=storage,
                      study_name=study_name, fixed=fixed, prune=prune, seed=seed,
                      callbacks=callbacks)
    report = write_tuning_report(study, out)
    if not any(t.value is not None for t in _complete(study)):
        raise ConfigError(f"no trial of study {study_name!r} completed; see {report}")
    best = study.best_trial
    run_dir = None
    if retrain:
        params = best.user_attrs.get("params") or {**best.params, **fixed}
        run_dir = retrain_best(out / "best", spec.with_params(**params), split)
    return TuneResult(study_name, storage, len(finished_trials(study)), float(best.value),
                      dict(best.user_attrs.get("params", best.params)), best.number, run_dir,
                      report)


def _prepare(out: Path, spec: RunSpec, record: dict[str, Any]) -> Split:
    """The study's split: made and saved on the first session, loaded on the next ones."""
    marker = out / STUDY_FILE
    if marker.exists():
        saved = read_json(marker)
        if saved != _jsonable(record):
            raise ConfigError(
                f"{out} holds a study with other settings ({marker}); rerun with the same "
                "arguments to resume it, or choose another --out")
        return load_split(out / "split")
    split = make_split(spec)
    out.mkdir(parents=True, exist_ok=True)
    save_split(split, out / "split")
    write_json(marker, record)  # written last: its presence means the split is complete
    return split


def _jsonable(obj: Any) -> Any:
    import json

    return json.loads(json.dumps(obj))


def retrain_best(run_dir: Path, spec: RunSpec, split: Split) -> Path:
    """Train ``spec`` on ``split`` as an ordinary run directory (resumed or kept if already there)."""
    from dataclasses import replace

    layout = RunDir(run_dir)
    spec = replace(spec, resolved=resolve(spec, split))
    if layout.exists():
        existing = RunSpec.load(layout.path)
        if _jsonable(existing.params) == _jsonable(spec.params):
            if not layout.is_complete():
                train_run(layout.path, resume=layout.can_resume())
            return layout.path
        shutil.rmtree(layout.path)  # an earlier best, superseded by a better trial
    write_run(layout, spec, split)
    train_run(layout.path)
    return layout.path


def _complete(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


# -- the report -----------------------------------------------------------------------------------
def write_tuning_report(study: Any, out_dir: str | Path, top: int = 10) -> Path:
    """``report.md`` (counts, best trials) plus Optuna's plots as PNG where they can be drawn."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Study {study.study_name}", "", *_counts(study), ""]
    lines += ["## Best trials", "", *trials_table(study, top), ""]
    plots = _write_plots(study, out)
    if plots:
        lines += ["## Plots", ""] + [f"![{name}]({file})" for name, file in plots] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _counts(study: Any) -> list[str]:
    from optuna.trial import TrialState

    # Surplus trials were never run (see run_trials): they are not part of the study's story.
    states = [t.state for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    counts = ", ".join(f"{states.count(s)} {s.name.lower()}" for s in
                       (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
                       if states.count(s))
    lines = [f"Direction: {study.direction.name.lower()}; trials: {counts or 'none'}."]
    if _complete(study):
        best = study.best_trial
        lines.append(f"Best: trial {best.number}, value {best.value:.4f}, parameters "
                     + ", ".join(f"{k}={v}" for k, v in best.params.items()) + ".")
    return lines


def trials_table(study: Any, top: int = 10) -> list[str]:
    """Markdown rows of the ``top`` complete trials, best first."""
    trials = sorted(_complete(study), key=lambda t: t.value,
                    reverse=study.direction.name == "MAXIMIZE")[:top]
    names = list(dict.fromkeys(k for t in trials for k in t.params))
    lines = ["| trial | value | epochs | seconds | " + " | ".join(names) + " |",
             "|---:|---:|---:|---:|" + "---:|" * len(names)]
    for t in trials:
        seconds = t.duration.total_seconds() if t.duration else float("nan")
        cells = [_cell(t.params.get(n)) for n in names]
        lines.append(f"| {t.number} | {t.value:.4f} | {epochs_cell(t)} | "
                     f"{seconds:.1f} | " + " | ".join(cells) + " |")
    return lines


def epochs_cell(trial: Any) -> str:
    """A trial's reported epochs, or "–" for a closed-form model, which reports none."""
    return str(len(trial.intermediate_values)) if trial.intermediate_values else "–"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _write_plots(study: Any, out: Path) -> list[tuple[str, str]]:
    from aerec.plots import matplotlib_available

    if not matplotlib_available() or not _complete(study):
        return []
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm
    from matplotlib import rc_context
    from optuna.exceptions import ExperimentalWarning

    drawn = []
    plots = [("optimization history", "history.png", ovm.plot_optimization_history),
             ("validation per epoch", "intermediate.png", ovm.plot_intermediate_values),
             ("parameter importance", "importance.png", ovm.plot_param_importances)]
    if not any(t.intermediate_values for t in study.trials):
        plots.pop(1)  # closed-form models (EASE, EDLAE) report no epochs: nothing to draw
    for name, file, draw in plots:
        # Optuna's plots switch pyplot to its ggplot style; keep that change inside this block.
        with rc_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            try:
                ax = draw(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # e.g. importance with fewer than two complete trials
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            fig.savefig(out / file, dpi=100)
            plt.close(fig)
        drawn.append((name, file))
    return drawn


__all__ = ["TuneResult", "tune", "run_study", "run_trials", "make_objective", "retrain_best",
           "write_tuning_report", "trials_table", "epochs_cell", "finished_trials"]
