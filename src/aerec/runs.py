"""Run directories: prepare the data, train, evaluate, and recommend from what a run saved.

A run directory holds everything needed to evaluate, resume or serve a run without the original
data files; its layout is :class:`aerec.run_dir.RunDir`'s. What is run is a
:class:`aerec.run_spec.RunSpec`, checked whole before anything is written; ``run.json`` stores it
typed, with what resolved on the data, so every later reader builds the same model.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import aerec
from aerec.data.interactions import Interactions
from aerec.data.options import DataSource
from aerec.data.splits import HeldOut, Split
from aerec.errors import ConfigError, TrainingDivergedError
from aerec.models import Recommender
from aerec.persistence import check_fields, load_csr, read_json, save_csr, write_json
from aerec.run_dir import RUN_FORMAT, RunDir  # noqa: F401  (RUN_FORMAT: re-exported for readers of runs)
from aerec.run_spec import RunSpec, TrainingOptions
from aerec.training import Callback, Trainer



# -- data -----------------------------------------------------------------------------------------
def load_source(source: DataSource) -> tuple[Interactions, Interactions | None]:
    """Read the interactions a data source names: a data set, or given train (and test) files."""
    from aerec.data import readers
    from aerec.data.datasets import load_dataset

    from aerec.data.item_table import read_item_table, with_item_names

    if source.dataset is not None:
        if source.duplicates:
            raise ConfigError("--duplicates applies to files of interactions, not to a data set")
        train, test = load_dataset(source.dataset, data_dir=source.data_dir), None
    else:
        # --duplicates: the table readers' duplicates= (the other formats refuse it)
        options = {**source.columns,
                   **({"duplicates": source.duplicates} if source.duplicates else {})}
        train = readers.read_file(source.train, source.format, **options)
        test = None
        if source.test is not None:
            test_kwargs = dict(options)
            if source.format == "lightgcn":  # the same users; unseen test items: see given_split
                test_kwargs.update(user_ids=train.user_ids)
            test = readers.read_file(source.test, source.format, **test_kwargs)
    if source.item_table:  # --item-table: names of one's own items
        names = read_item_table(source.item_table)
        train = with_item_names(train, names)
        test = None if test is None else with_item_names(test, names)
    return train, test


def make_split(spec: RunSpec) -> Split:
    """Load, preprocess and split the data of a run."""
    from aerec.data.split_kinds import make_split as split_data

    data, test = load_source(spec.data)
    return split_data(data, test, spec.data, spec.preprocess, spec.split, spec.implicit)


# -- saving and loading splits --------------------------------------------------------------------
_PARTS = ("train", "validation_fold_in", "validation_targets", "test_fold_in", "test_targets")


def _parts(split: Split) -> dict[str, Interactions]:
    return {
        "train": split.train,
        "validation_fold_in": split.validation.fold_in,
        "validation_targets": split.validation.targets,
        "test_fold_in": split.test.fold_in,
        "test_targets": split.test.targets,
    }


def save_split(split: Split, directory: str | Path) -> None:
    """Write a split as CSR ``.npz`` files and one ``ids.json``."""
    directory = Path(directory)
    parts = _parts(split)
    for name, part in parts.items():
        save_csr(directory / f"{name}.npz", part.matrix)
    write_json(directory / "ids.json", {
        "kind": split.kind,
        "params": split.params,
        "explicit": split.train.explicit,
        "item_ids": [str(i) for i in split.train.item_ids],
        "users": {name: [str(u) for u in part.user_ids] for name, part in parts.items()},
        "item_titles": split.train.item_titles,
    })


def load_split(directory: str | Path) -> Split:
    """Read a split written by :func:`save_split`."""
    directory = Path(directory)
    path = directory / "ids.json"
    ids = read_json(path, expect=dict)
    check_fields(ids, path, {"kind": str, "params": dict, "explicit": bool, "item_ids": list,
                             "users": dict})
    items = np.asarray(ids["item_ids"], dtype=str)
    titles = ids.get("item_titles", {})
    parts = {
        name: Interactions(load_csr(directory / f"{name}.npz").astype(np.float32),
                           np.asarray(ids["users"][name], dtype=str), items, None,
                           ids["explicit"], titles)
        for name in _PARTS
    }
    return Split(
        train=parts["train"],
        validation=HeldOut(parts["validation_fold_in"], parts["validation_targets"]),
        test=HeldOut(parts["test_fold_in"], parts["test_targets"]),
        kind=ids["kind"], params=ids["params"],
    )


# -- preparing a run ------------------------------------------------------------------------------
def as_spec(spec: RunSpec | dict[str, Any]) -> RunSpec:
    """A :class:`RunSpec` (a ``run.json``-shaped dict is read and checked)."""
    return spec if isinstance(spec, RunSpec) else RunSpec.from_json(spec, "run spec")


def resolve(spec: RunSpec, split: Split) -> dict[str, Any]:
    """What the run resolves to on its data, recorded as ``run.json``'s ``resolved``: the model's
    data-dependent settings (Mult-VAE's anneal steps), the device and precision it will train
    with, and the users and items the split kept."""
    from aerec.device import resolve_device

    model = spec.make_model()
    resolved = dict(model.resolved_for(split.train))  # e.g. EASE's precision under "auto"
    if "device" in spec.params:
        resolved["device"] = str(resolve_device(spec.params["device"]))
    if "precision" in spec.params and "precision" not in resolved:
        resolved["precision"] = spec.params["precision"]
    resolved.update({
        "training_users": int(split.train.n_users),
        "validation_users": int(split.validation.fold_in.n_users),
        "test_users": int(split.test.fold_in.n_users),
        "items": int(split.train.n_items),
    })
    for name in ("users_not_evaluated", "test_interactions_untrained_item", "users_dropped",
                 "items_dropped"):
        if name in split.params:
            resolved[name] = split.params[name]
    return resolved


def choose(spec: RunSpec, split: Split) -> RunSpec:
    """``spec`` with the hyperparameters its ``training.choose`` asks for chosen on the split's
    validation users (never its test rows) and recorded in ``choice``; unchanged when it does
    not ask, or already holds its choice (a re-run of a recorded run)."""
    if not spec.training.choose or spec.choice is not None:
        return spec
    from aerec.selection import PATIENCE, choose_on_split

    # In one process even under torchrun: rank 0 prepares the run while the others wait for it.
    made = choose_on_split(spec.model, dict(spec.params), split,
                           trainer=Trainer(patience=PATIENCE, distributed=False))
    return replace(spec, params={**spec.params, **made.chosen}, choice=made.to_json())


def beta_search_run(run_dir: str | Path, *, callbacks: Sequence[Callback] = (),
                    progress: bool = False) -> Any:
    """Mult-VAE's beta search (:func:`aerec.beta_search.search_beta`) on a prepared run's split;
    record it and set the run's beta cap.

    Writes ``beta_search.json`` (the per-epoch records and the choice) and ``beta_search.png``,
    and rewrites ``run.json`` with the chosen ``anneal_cap`` (and the search's anneal length) in
    its params, a ``beta_search`` summary, and what resolves for the new settings.
    """
    from aerec.beta_search import check_beta_search, plot_beta_search, search_beta

    layout = RunDir(run_dir)
    spec = RunSpec.load(layout.path)
    check_beta_search(spec.model)
    split = load_split(layout.split)
    search = search_beta(split.train, split.validation, dict(spec.params),
                         callbacks=callbacks, progress=progress)
    write_json(layout.beta_search, search.to_json())
    plot_beta_search(search, layout.beta_search_plot)
    summary = {k: v for k, v in search.to_json().items() if k != "records"}
    spec = replace(spec.with_params(**search.retraining_params()), beta_search=summary)
    spec = replace(spec, resolved=resolve(spec, split))
    layout.write_spec({**spec.to_json(), "versions": {"aerec": aerec.__version__}})
    return search


def new_run(run_dir: str | Path, spec: RunSpec | dict[str, Any], *,
            overwrite: bool = False) -> Path:
    """Create a run directory for ``spec``: split the data, write ``split/`` and ``run.json`` with
    what resolved. Nothing is written when the spec, the data or the place is wrong; a folder
    that holds anything but a run is refused, a run there is replaced only with ``overwrite``."""
    layout = RunDir(run_dir)
    layout.check_new(overwrite=overwrite)  # refuses before the (slow) split
    spec = as_spec(spec)
    split = make_split(spec)
    spec = choose(spec, split)
    resolved = resolve(spec, split)
    layout.check_new(overwrite=overwrite)
    layout.clear()  # a run to overwrite goes only now, once everything else is known to work
    write_run(layout, replace(spec, resolved=resolved), split)
    return layout.path


def write_run(layout: RunDir, spec: RunSpec, split: Split) -> None:
    """Write a prepared run: the split first, ``run.json`` last (its presence means ready)."""
    layout.path.mkdir(parents=True, exist_ok=True)
    save_split(split, layout.split)
    layout.write_spec({**spec.to_json(), "versions": {"aerec": aerec.__version__}})


def read_run(run_dir: str | Path) -> RunSpec:
    """The spec of a run directory (its ``run.json``, checked)."""
    return RunSpec.load(run_dir)


def model_of(spec: RunSpec) -> Recommender:
    """An unfitted model with the run's hyperparameters."""
    return spec.make_model()


def run(spec: RunSpec, out: str | Path, *, progress: bool | None = None,
        callbacks: Sequence[Callback] = (), overwrite: bool = False) -> dict[str, Any]:
    """Run ``spec`` into the new run directory ``out``, as ``aerec train --out`` does: split,
    train, select, (refit,) evaluate on test. Returns the test metrics (``out/metrics.json``).

    Parameters
    ----------
    spec : RunSpec
        The run (see :meth:`RunSpec.create`; :meth:`RunSpec.load` reads a finished run's).
    out : str or Path
        The run directory to create; it must not exist, or be an empty folder.
    progress : bool, optional
        A progress bar on stderr; by default when stderr is a terminal.
    callbacks : sequence of callables
        Each receives the figures of every finished epoch.
    overwrite : bool
        Replace an aerec run already at ``out`` (a folder holding anything else is refused).

    Examples
    --------
    >>> spec = aerec.RunSpec.create("mult-dae", data="ml-100k", params={"epochs": 3})  # doctest: +SKIP
    >>> aerec.run(spec, "runs/dae")["ndcg@100"]  # doctest: +SKIP
    """
    if progress is None:
        progress = sys.stderr.isatty()
    run_dir = new_run(out, spec, overwrite=overwrite)
    return train_run(run_dir, progress=progress, callbacks=callbacks)


# -- training -------------------------------------------------------------------------------------
def train_run(
    run_dir: str | Path,
    *,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
) -> dict[str, Any]:
    """Train the model of a prepared run directory, select, evaluate on test, write metrics.

    With ``training.refit`` (the default of given splits) the selection run is then repeated on
    the whole training rows: the same hyperparameters, the same schedule (what resolved for the
    selection run, e.g. Mult-VAE's anneal steps, is pinned), the same seed, stopped at the epoch
    chosen on validation; that model is evaluated, and its epochs are kept in ``history.json``
    marked ``"phase": "refit"``. Leftovers of interrupted writes are removed first. Returns the
    test metrics (also written to ``metrics.json``).
    """
    layout = RunDir(run_dir)
    with layout.lock():
        return _train_locked(layout, resume=resume, callbacks=callbacks, progress=progress)


def _train_locked(layout: RunDir, *, resume: bool, callbacks: Sequence[Callback],
                  progress: bool) -> dict[str, Any]:
    spec = RunSpec.load(layout.path)
    layout.remove_temp_files()
    split = load_split(layout.split)
    options = trainer_options(spec.training)
    refit = spec.training.refit
    started = time.perf_counter()
    diverged: TrainingDivergedError | None = None
    if refit and layout.selection.is_file():  # resumed after the selection had finished
        selection = read_json(layout.selection)
        model = None
    else:
        model = model_of(spec)
        trainer = Trainer(checkpoint=layout.checkpoint, resume=resume and layout.checkpoint.is_file(),
                          progress=progress, callbacks=tuple(callbacks), **options)
        try:
            trainer.fit(model, split.train, split.validation)
        except TrainingDivergedError as exc:
            diverged = exc
            if not model.trains_by_epochs or model.training_.best_epoch is None:
                raise
        result = model.training_ if model.trains_by_epochs else None
        selection = {"best_epoch": result.best_epoch if result else None,
                     "epochs_trained": result.epochs_trained if result else None,
                     "stopped_early": result.stopped_early if result else False,
                     "history": result.history if result else []}
        if refit:
            write_json(layout.selection, selection)
    history = list(selection["history"])
    if refit:
        model = _refit(spec, split, layout, selection, resume=resume, progress=progress)
        if model.trains_by_epochs:
            history += [{**record, "phase": "refit"} for record in model.training_.history]
    total = time.perf_counter() - started
    model.save(layout.model)
    write_json(layout.history, history)
    from aerec.plots import write_history_plot  # nothing without matplotlib

    write_history_plot(layout.history_plot, selection["history"],
                       f"{spec.model} ({layout.path.name})", selection["best_epoch"])
    metrics = evaluate_model(model, split.test)
    train_secs = [h.get("train_seconds", h.get("seconds", 0.0)) for h in selection["history"]]
    # A closed-form model (EASE, popularity) counts as one epoch that took the whole fit.
    closed_form = not selection["history"] and not model.trains_by_epochs
    metrics.update({
        "epochs": 1 if closed_form else len(selection["history"]),
        "best_epoch": selection["best_epoch"],
        "seconds_per_epoch": total if closed_form else float(np.mean(train_secs)) if train_secs else 0.0,
        "total_seconds": total,
        "peak_rss_mb": peak_rss_mb(),
    })
    if options["patience"] is not None:
        metrics["stopped_early"] = selection["stopped_early"]
    if refit:
        metrics["refit_epochs"] = _refit_epochs(model)
    write_json(layout.metrics, metrics)
    if diverged is not None:
        raise diverged
    return metrics


def trainer_options(training: TrainingOptions) -> dict[str, Any]:
    """The :class:`~aerec.training.Trainer` settings of a run's training options."""
    return {"patience": training.patience}


def _refit(spec: RunSpec, split: Split, layout: RunDir, selection: dict[str, Any], *,
           resume: bool, progress: bool) -> Recommender:
    """The selection run repeated on the whole training rows (``split.test.fold_in``), with the
    schedule recorded in ``run.json``; resumable from its own checkpoint."""
    model = model_of(spec)
    schedule = _schedule(model, split.train)
    return refit(model, split.test.fold_in, selection["best_epoch"] or
                 selection["epochs_trained"],
                 schedule={name: spec.resolved.get(name, value) for name, value in schedule.items()},
                 checkpoint=layout.refit_checkpoint,
                 resume=resume and layout.refit_checkpoint.is_file(), progress=progress)


def _schedule(model: Recommender, selection_rows: Any) -> dict[str, Any]:
    """What resolved for the selection run that is a hyperparameter of the model (Mult-VAE's
    anneal steps, ELSA's rank, SANSA's density), to pin in its refit."""
    fields = model.config.__dataclass_fields__
    return {k: v for k, v in model.resolved_for(selection_rows).items() if k in fields}


def refit(model: Recommender, rows: Any, stop_after: int | None, *,
          selection_rows: Any = None, schedule: dict[str, Any] | None = None,
          **trainer_options: Any) -> Recommender:
    """``model``'s selection run repeated on ``rows`` (a given split's whole training rows).

    The same hyperparameters and seed, the schedule that resolved for the selection run pinned
    (Mult-VAE's anneal steps: beta is the same at every epoch), stopped after ``stop_after``
    epochs (the epoch chosen on validation). ``model`` itself is not changed.

    Parameters
    ----------
    model : Recommender
        The selected model (fitted or not: only its hyperparameters are used).
    rows : Interactions or scipy.sparse.csr_matrix
        What the refit learns from.
    stop_after : int, optional
        The epoch to stop at; None trains every epoch (and is the only choice of closed forms).
    selection_rows : Interactions, optional
        The selection run's training rows, to resolve its schedule; or give ``schedule``.
    schedule : dict, optional
        The resolved settings of the selection run (``run.json``'s ``resolved``).
    **trainer_options
        For the :class:`~aerec.training.Trainer` (checkpoint, resume, progress).

    Returns
    -------
    Recommender
        A new model, fitted.
    """
    if schedule is None:
        schedule = _schedule(model, selection_rows) if selection_rows is not None else {}
    again = type(model)(**{**model.get_params(), **schedule})
    Trainer(stop_after=int(stop_after) if stop_after else None, **trainer_options).fit(
        again, rows, None)
    return again


def _refit_epochs(model: Recommender) -> int | None:
    return model.training_.epochs_trained if model.trains_by_epochs else None


def evaluate_model(model: Recommender, heldout: HeldOut, ks: tuple[int, ...] = (10, 20, 50, 100),
                   metrics: Sequence[str] | None = None,
                   item_popularity: np.ndarray | None = None) -> dict[str, Any]:
    """Test metrics of a fitted model: ranking metrics (the papers' three unless ``metrics``
    names others, see :mod:`aerec.metric_names`), or RMSE / MAE for rating predictors."""
    from aerec.evaluation import evaluate_ranking

    if model.implicit:
        return evaluate_ranking(model.score_tensor, heldout.fold_in.matrix, heldout.targets.matrix,
                                ks=ks, metrics=metrics, item_popularity=item_popularity)
    if metrics is not None or tuple(ks) != (10, 20, 50, 100):
        raise ConfigError("this is a rating run (RMSE / MAE): cut-offs and ranking metrics apply "
                          "to ranking runs only")
    return model.evaluate_ratings(heldout)


def load_run(run_dir: str | Path, device: str = "auto") -> tuple[RunSpec, Split, Recommender]:
    """A finished run's spec, split and selected model."""
    layout = RunDir(run_dir)
    spec = RunSpec.load(layout.path)
    split = load_split(layout.split)
    return spec, split, Recommender.load(layout.model, device=device)


def evaluate_run(run_dir: str | Path, device: str = "auto", ks: Sequence[int] = (10, 20, 50, 100),
                 metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """Re-evaluate a run's saved model on its test users; returns the metrics. Popularity and
    novelty are measured against the rows the final model learned: the training users, or with a
    refit the whole training rows (the validation carve included)."""
    from aerec.metrics import item_popularity

    spec, split, model = load_run(run_dir, device)
    learned = split.test.fold_in if spec.training.refit else split.train
    popularity = (item_popularity(learned.matrix)
                  if {"popularity", "novelty"} & set(metrics or ()) else None)
    return evaluate_model(model, split.test, tuple(ks), metrics, popularity)


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024
