"""Run directories: prepare the data, train, evaluate, and recommend from what a run saved.

A run directory holds everything needed to evaluate, resume or serve a run without the original
data files::

    run.json              what was run: model, hyperparameters, data, preprocessing, split, versions
    split/                the split as CSR .npz files plus ids.json (vocabularies, titles)
    checkpoint.safetensors  training state after the last finished epoch (for --resume)
    model/                the selected model (model.json + model.safetensors)
    history.json          one record per epoch
    metrics.json          test metrics, seconds_per_epoch, epochs
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import aerec
from aerec.data.interactions import Interactions
from aerec.data.splits import HeldOut, Split
from aerec.errors import ConfigError, DataError, TrainingDivergedError
from aerec.models import Recommender, get_model_class
from aerec.persistence import load_csr, read_json, save_csr, write_json

RUN_FORMAT = "aerec-run"
#: Default number of held-out users for the strong-generalization split, per dataset (the paper's
#: 10,000 for ML-20M); other data sets hold out this fraction of their users.
DEFAULT_HELDOUT: dict[str, int | float] = {"ml-20m": 10_000}
DEFAULT_HELDOUT_FRACTION = 0.1


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


def preprocess(data: Interactions, options: dict[str, Any], implicit: bool) -> Interactions:
    """Binarise (implicit models only) then filter by minimum counts."""
    from aerec.data.preprocess import binarize, filter_min_counts

    if implicit and data.explicit and options.get("threshold") is not None:
        data = binarize(data, threshold=float(options["threshold"]))
    if options.get("min_user") or options.get("min_item"):
        data = filter_min_counts(
            data, min_user=int(options.get("min_user") or 0), min_item=int(options.get("min_item") or 0)
        )
    return data


def make_split(spec: dict[str, Any], model_cls: type[Recommender]) -> Split:
    """Load, preprocess and split the data described by a run spec."""
    from aerec.data.splits import given_split, strong_generalization

    data, test = load_source(spec["data"])
    options = spec.get("preprocess", {})
    split = spec["split"]
    kind = split["kind"]
    if kind == "strong":
        data = preprocess(data, options, model_cls.implicit)
        return strong_generalization(data, split["n_heldout"], seed=split["seed"],
                                     test_prop=split.get("test_prop", 0.2))
    if kind == "given":
        if test is None:
            raise ConfigError("a given split needs --test FILE")
        data = preprocess(data, options, model_cls.implicit)
        if model_cls.implicit and test.explicit and options.get("threshold") is not None:
            from aerec.data.preprocess import binarize

            test = binarize(test, threshold=float(options["threshold"]))
        return given_split(data, test, validation_fraction=split.get("validation_fraction", 0.1),
                           seed=split["seed"])
    extra = SPLIT_KINDS.get(kind)
    if extra is None:
        raise ConfigError(f"unknown split {kind!r}; valid: {', '.join(['strong', 'given', *SPLIT_KINDS])}")
    return extra(data, test, spec, model_cls)


#: Further split kinds, registered by other modules: kind -> fn(data, test, spec, model_cls).
SPLIT_KINDS: dict[str, Callable[..., Split]] = {}


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
    ids = read_json(directory / "ids.json")
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


# -- training -------------------------------------------------------------------------------------
def new_run(run_dir: str | Path, spec: dict[str, Any]) -> Path:
    """Create a run directory for ``spec`` (refusing to overwrite a different run)."""
    run_dir = Path(run_dir)
    if (run_dir / "run.json").exists():
        raise ConfigError(
            f"{run_dir} already holds a run; use --resume {run_dir} to continue it or choose "
            "another --out"
        )
    model_cls = get_model_class(spec["model"])
    model_cls(**spec.get("params", {}))  # validate hyperparameters before any work
    split = make_split(spec, model_cls)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_split(split, run_dir / "split")
    full = {"format": RUN_FORMAT, **spec, "versions": {"aerec": aerec.__version__}}
    write_json(run_dir / "run.json", full)
    return run_dir


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The ``run.json`` of a run directory, checked."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    spec = read_json(run_dir / "run.json")
    if spec.get("format") != RUN_FORMAT:
        raise ConfigError(f"{run_dir / 'run.json'}: not an aerec run")
    return spec


def train_run(
    run_dir: str | Path,
    *,
    resume: bool = False,
    callbacks: tuple[Callable[[dict[str, Any]], None], ...] = (),
    progress: bool = False,
) -> dict[str, Any]:
    """Train the model of a prepared run directory, select, evaluate on test, write metrics.

    Returns the test metrics (also written to ``metrics.json``).
    """
    run_dir = Path(run_dir)
    spec = read_run(run_dir)
    split = load_split(run_dir / "split")
    model = get_model_class(spec["model"])(**spec.get("params", {}))
    started = time.perf_counter()
    diverged: TrainingDivergedError | None = None
    fit_kwargs: dict[str, Any] = {"callbacks": callbacks, "progress": progress}
    if hasattr(model, "module_") or _is_torch(model):
        fit_kwargs.update(run_dir=run_dir, resume=resume)
    try:
        model.fit(split.train, split.validation, **fit_kwargs)
    except TrainingDivergedError as exc:
        diverged = exc
        if getattr(model, "best_epoch_", None) is None:
            raise
    total = time.perf_counter() - started
    model.save(run_dir / "model")
    history = getattr(model, "history_", [])
    write_json(run_dir / "history.json", history)
    from aerec.plots import write_history_plot  # history.png; nothing without matplotlib

    write_history_plot(run_dir, history, f"{spec['model']} ({run_dir.name})",
                       getattr(model, "best_epoch_", None))
    metrics = evaluate_model(model, split.test)
    train_secs = [h.get("train_seconds", h.get("seconds", 0.0)) for h in history]
    # A closed-form model (EASE, popularity) counts as one epoch that took the whole fit.
    closed_form = not history and not _is_torch(model)
    metrics.update({
        "epochs": 1 if closed_form else len(history),
        "best_epoch": getattr(model, "best_epoch_", None),
        "seconds_per_epoch": total if closed_form else float(np.mean(train_secs)) if train_secs else 0.0,
        "total_seconds": total,
        "peak_rss_mb": peak_rss_mb(),
    })
    write_json(run_dir / "metrics.json", metrics)
    if diverged is not None:
        raise diverged
    return metrics


def _is_torch(model: Recommender) -> bool:
    from aerec.models.torch_base import TorchRecommender

    return isinstance(model, TorchRecommender)


def evaluate_model(model: Recommender, heldout: HeldOut, ks: tuple[int, ...] = (10, 20, 50, 100)) -> dict[str, Any]:
    """Test metrics of a fitted model: ranking metrics, or RMSE / MAE for rating predictors."""
    from aerec.evaluation import evaluate_ranking

    if model.implicit:
        return evaluate_ranking(model.score_tensor, heldout.fold_in.matrix, heldout.targets.matrix, ks=ks)
    return model.evaluate_ratings(heldout)


def evaluate_run(run_dir: str | Path, device: str = "auto") -> dict[str, Any]:
    """Re-evaluate a run's saved model on its test users; returns the metrics."""
    run_dir = Path(run_dir)
    read_run(run_dir)
    split = load_split(run_dir / "split")
    model = Recommender.load(run_dir / "model", device=device)
    return evaluate_model(model, split.test)


# -- recommending ---------------------------------------------------------------------------------
def user_history(split: Split, user_id: str) -> Interactions:
    """The history of a user the run knows (a training user, else a held-out user's fold-in)."""
    for part in (split.train, split.validation.fold_in, split.test.fold_in):
        row = part.user_index.get(str(user_id))
        if row is not None:
            return part.select_users(np.array([row]))
    raise DataError(f"user {user_id!r} is not in this run's data; pass --items to fold in a history")


def items_history(model: Recommender, item_ids: list[str]) -> tuple[Any, list[str]]:
    """A one-row CSR history from raw item ids; returns it and the ids the model does not know.

    An entry may carry a rating as ``ID:RATING`` (for rating models). Without one, an item counts
    as 1 for implicit models and as the top of the training rating range for rating models, so
    that "items I liked" means the same to both.
    """
    import scipy.sparse as sp

    default = 1.0 if model.implicit else float(getattr(model, "rating_range_", (1.0, 5.0))[1])
    index = {str(i): k for k, i in enumerate(model.item_ids_)}
    values: dict[int, float] = {}
    unknown = []
    for entry in item_ids:
        raw, sep, rating = str(entry).partition(":")
        if raw not in index:
            unknown.append(raw)
            continue
        try:
            values[index[raw]] = float(rating) if sep else default
        except ValueError:
            raise DataError(f"item {entry!r}: the rating after ':' must be a number") from None
    cols = np.array(sorted(values), np.int32)
    row = sp.csr_matrix(
        (np.array([values[c] for c in cols], np.float32), cols, np.array([0, len(cols)])),
        shape=(1, model.n_items_),
    )
    return row, unknown


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024


# Split kinds of rating prediction (u1..u5, ua, ub, random, time).
from aerec.data import explicit_splits as _explicit_splits  # noqa: E402

_explicit_splits.register(SPLIT_KINDS)
