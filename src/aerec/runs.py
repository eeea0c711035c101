"""Run directories: prepare the data, train, evaluate, and recommend from what a run saved.

A run directory holds everything needed to evaluate, resume or serve a run without the original
data files; its layout is :class:`aerec.run_dir.RunDir`'s. A run's hyperparameters are validated
and converted once, before anything is written (:func:`typed_spec`), and ``run.json`` stores them
typed, so every later reader builds the same model.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import aerec
from aerec.config import config_to_dict, make_config
from aerec.data.interactions import Interactions
from aerec.data.splits import HeldOut, Split
from aerec.errors import ConfigError, TrainingDivergedError
from aerec.models import Recommender, get_model_class
from aerec.persistence import check_fields, load_csr, read_json, save_csr, write_json
from aerec.run_dir import RUN_FORMAT, RunDir  # noqa: F401  (RUN_FORMAT: re-exported for readers of runs)
from aerec.training import Callback, Trainer



# -- data -----------------------------------------------------------------------------------------
def load_source(data: dict[str, Any]) -> tuple[Interactions, Interactions | None]:
    """Read the interactions a data spec names: a dataset, or given train (and test) files."""
    from aerec.data import readers
    from aerec.data.datasets import load_dataset

    if data.get("dataset"):
        return load_dataset(data["dataset"], data_dir=data.get("data_dir")), None
    fmt = data.get("format") or "auto"
    train = readers.read_file(data["train"], fmt, **data.get("columns", {}))
    test = None
    if data.get("test"):
        test_kwargs = dict(data.get("columns", {}))
        if fmt == "lightgcn":
            test_kwargs.update(user_ids=train.user_ids, item_ids=train.item_ids)
        test = readers.read_file(data["test"], fmt, **test_kwargs)
    return train, test


def make_split(spec: dict[str, Any], model_cls: type[Recommender]) -> Split:
    """Load, preprocess and split the data described by a run spec."""
    from aerec.data.split_kinds import make_split as split_data

    data, test = load_source(spec["data"])
    return split_data(data, test, spec, model_cls.implicit)


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
def typed_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with its model's hyperparameters validated and converted to their types (all of
    them, defaults included, so the run does not depend on later changes of a default) and its
    training options checked.

    Raises
    ------
    ConfigError
        For an unknown model, an unknown hyperparameter or a value that cannot be used.
    """
    model_cls = get_model_class(spec["model"])
    config = make_config(model_cls.Config, dict(spec.get("params") or {}), owner=model_cls.name)
    training = dict(spec.get("training") or {})
    trainer_options(training)  # validates
    return {**spec, "params": config_to_dict(config), "training": training}


#: The training options of a run (``run.json``'s ``training``): early stopping, and the refit on
#: the whole training rows after selection (given splits).
TRAINING_OPTIONS = ("patience", "refit")


def trainer_options(training: dict[str, Any]) -> dict[str, Any]:
    """The :class:`~aerec.training.Trainer` settings a run's ``training`` entry asks for."""
    unknown = sorted(set(training) - set(TRAINING_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown training option(s) {', '.join(unknown)}; valid: "
                          f"{', '.join(TRAINING_OPTIONS)}")
    if not isinstance(training.get("refit", False), bool):
        raise ConfigError(f"refit must be true or false, got {training['refit']!r}")
    options = {"patience": training.get("patience")}
    Trainer(**options)  # validates
    return options


def new_run(run_dir: str | Path, spec: dict[str, Any]) -> Path:
    """Create a run directory for ``spec``: validate it, split the data, write ``split/`` and
    ``run.json``. Nothing is written when the spec, the data or the place is wrong."""
    layout = RunDir(run_dir)
    layout.check_new()
    spec = typed_spec(spec)
    split = make_split(spec, get_model_class(spec["model"]))
    resolved = model_of(spec).resolved_for(split.train)
    write_run(layout, {**spec, **({"resolved": resolved} if resolved else {})}, split)
    return layout.path


def write_run(layout: RunDir, spec: dict[str, Any], split: Split) -> None:
    """Write a prepared run: the split first, ``run.json`` last (its presence means ready)."""
    layout.path.mkdir(parents=True, exist_ok=True)
    save_split(split, layout.split)
    layout.write_spec({**spec, "versions": {"aerec": aerec.__version__}})


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The ``run.json`` of a run directory, checked."""
    return RunDir(run_dir).read_spec()


def model_of(spec: dict[str, Any]) -> Recommender:
    """An unfitted model with the run's hyperparameters."""
    return get_model_class(spec["model"])(**spec.get("params", {}))


# -- training -------------------------------------------------------------------------------------
def train_run(
    run_dir: str | Path,
    *,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
) -> dict[str, Any]:
    """Train the model of a prepared run directory, select, evaluate on test, write metrics.

    With ``training.refit`` (the default of given splits), the model selected on the validation
    carve is then trained again, from the same seed, on the whole training rows for the chosen
    number of epochs, and that model is evaluated. Leftovers of interrupted writes are removed
    first. Returns the test metrics (also written to ``metrics.json``).
    """
    layout = RunDir(run_dir)
    spec = layout.read_spec()
    layout.remove_temp_files()
    split = load_split(layout.split)
    training = spec.get("training") or {}
    options = trainer_options(training)
    refit = bool(training.get("refit", False))
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
            if getattr(model, "best_epoch_", None) is None:
                raise
        selection = {"best_epoch": getattr(model, "best_epoch_", None),
                     "epochs_trained": getattr(model, "epochs_trained_", None),
                     "stopped_early": bool(getattr(model, "stopped_early_", False)),
                     "history": getattr(model, "history_", [])}
        if refit:
            write_json(layout.selection, selection)
    if refit:
        model = _refit(spec, split, layout, selection, resume=resume, progress=progress)
    total = time.perf_counter() - started
    model.save(layout.model)
    history = selection["history"]
    write_json(layout.history, history)
    from aerec.plots import write_history_plot  # nothing without matplotlib

    write_history_plot(layout.history_plot, history, f"{spec['model']} ({layout.path.name})",
                       selection["best_epoch"])
    metrics = evaluate_model(model, split.test)
    train_secs = [h.get("train_seconds", h.get("seconds", 0.0)) for h in history]
    # A closed-form model (EASE, popularity) counts as one epoch that took the whole fit.
    closed_form = not history and not _is_torch(model)
    metrics.update({
        "epochs": 1 if closed_form else len(history),
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


def _refit(spec: dict[str, Any], split: Split, layout: RunDir, selection: dict[str, Any], *,
           resume: bool, progress: bool) -> Recommender:
    """The run's model trained from its seed on the whole training rows (``split.test.fold_in``)
    for the epochs chosen on validation; resumable from its own checkpoint."""
    params = dict(spec.get("params", {}))
    if "epochs" in params:
        params["epochs"] = int(selection["best_epoch"] or selection["epochs_trained"] or 0)
    model = model_of({**spec, "params": params})
    Trainer(checkpoint=layout.refit_checkpoint,
            resume=resume and layout.refit_checkpoint.is_file(),
            progress=progress).fit(model, split.test.fold_in, None)
    return model


def _refit_epochs(model: Recommender) -> int | None:
    return getattr(model, "epochs_trained_", None) if _is_torch(model) else None


def _is_torch(model: Recommender) -> bool:
    from aerec.models.torch_base import TorchRecommender

    return isinstance(model, TorchRecommender)


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


def load_run(run_dir: str | Path, device: str = "auto") -> tuple[dict[str, Any], Split, Recommender]:
    """A finished run's spec, split and selected model."""
    layout = RunDir(run_dir)
    spec = layout.read_spec()
    split = load_split(layout.split)
    return spec, split, Recommender.load(layout.model, device=device)


def evaluate_run(run_dir: str | Path, device: str = "auto", ks: Sequence[int] = (10, 20, 50, 100),
                 metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """Re-evaluate a run's saved model on its test users; returns the metrics. Popularity and
    novelty are measured against the run's training users."""
    from aerec.metrics import item_popularity

    _, split, model = load_run(run_dir, device)
    popularity = (item_popularity(split.train.matrix)
                  if {"popularity", "novelty"} & set(metrics or ()) else None)
    return evaluate_model(model, split.test, tuple(ks), metrics, popularity)


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024
