"""``aerec train``: prepare a run directory, train, select on validation, evaluate on test.

Also the launcher under ``torchrun`` (data-parallel training: rank 0 prepares and writes the run
directory, every process trains its share) and the Mult-VAE beta search (``--beta-search``).
Nothing heavy is imported at module level: ``aerec train --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from aerec.cli.common import MODEL_NAMES, print_metrics
from aerec.errors import ConfigError

#: Held-out users of the strong-generalization split when --heldout is not given.
DEFAULT_HELDOUT_FRACTION = 0.1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model and evaluate it on test users",
        description="Train a model, keep the epoch with the best validation NDCG@100 (RMSE for "
        "rating models), evaluate it on the test users and write RUN_DIR/metrics.json. "
        "Either --out RUN_DIR (a new run) or --resume RUN_DIR (continue one) is required.",
    )
    src = p.add_argument_group("data")
    src.add_argument("--data", metavar="NAME|FILE", help="a data set (ml-100k, ml-1m, ml-10m, "
                     "ml-20m, ml-25m, ml-latest-small, netflix, msd: looked up in --data-dir / "
                     "AEREC_DATA_DIR, then the cache, else downloaded where a source serves it; "
                     "ml-20m, netflix and msd get the Mult-VAE paper's preprocessing and held-out "
                     "users), or a file of your interactions (.csv, .tsv, .parquet, ...; strong "
                     "generalization)")
    src.add_argument("--data-dir", metavar="DIR", help="folder holding datasets by name")
    src.add_argument("--train", metavar="FILE", help="training file of a given split")
    src.add_argument("--test", metavar="FILE", help="test file of a given split (same users)")
    src.add_argument("--format", default="auto",
                     help="format of --train/--test: auto, ml-100k, dat, ratings-csv, csv, tsv, "
                     "parquet, lightgcn")
    src.add_argument("--user-col", help="user column (csv/tsv/parquet)")
    src.add_argument("--item-col", help="item column (csv/tsv/parquet)")
    src.add_argument("--rating-col", help="rating column (csv/tsv/parquet)")
    src.add_argument("--timestamp-col", help="timestamp column (csv/tsv/parquet)")
    src.add_argument("--duplicates", choices=("last", "sum", "max", "error"),
                     help="what a (user, item) pair on several lines becomes (csv/tsv/parquet): "
                     "its latest line (default, with a warning), the sum or the maximum of its "
                     "values, or an error")
    src.add_argument("--item-table", metavar="FILE",
                     help="items table (.csv/.tsv/.parquet): an id column and a name column "
                     "(name, title, ...); the names show in recommendations and the demo page")
    pre = p.add_argument_group("preprocessing and split")
    pre.add_argument("--min-rating", type=float, default=None,
                     help="implicit models keep ratings above this (default 3.5, the paper's)")
    pre.add_argument("--min-user", type=int, default=None,
                     help="drop users with fewer interactions (default 5, msd 20; 0 for rating "
                     "models)")
    pre.add_argument("--min-item", type=int, default=None,
                     help="drop items with fewer interactions (default 0, msd 200)")
    pre.add_argument("--split", default=None,
                     help="strong (default for --data), given (default for --train/--test); "
                     "rating models add u1..u5, ua, ub, random and time")
    pre.add_argument("--heldout", default=None,
                     help="held-out users for validation and for test each: a count, or a "
                     f"fraction (default {DEFAULT_HELDOUT_FRACTION}; the paper's 10000 for ml-20m, "
                     "40000 for netflix, 50000 for msd)")
    pre.add_argument("--validation-fraction", type=float, default=0.1,
                     help="given and rating splits: share of the training interactions held "
                     "out for validation (default 0.1)")
    pre.add_argument("--test-fraction", type=float, default=0.1,
                     help="random split: share of the ratings held out for test (default 0.1)")
    pre.add_argument("--cutoff", metavar="DATE",
                     help="time split: train before DATE (2005-12-01, ISO or Unix seconds), test "
                     "from it on")
    pre.add_argument("--seed", type=int, default=98765, help="split seed (default 98765)")
    mdl = p.add_argument_group("model")
    mdl.add_argument("--model", choices=MODEL_NAMES, help="model to train")
    mdl.add_argument("--set", action="append", metavar="NAME=VALUE", default=[],
                     help="set a hyperparameter, e.g. --set epochs=50 (repeatable)")
    mdl.add_argument("--beta-search", action="store_true",
                     help="mult-vae: anneal beta to 1 once, pick the beta of the best validation "
                     "NDCG@100, then train with it (writes beta_search.png / .json)")
    run = p.add_argument_group("run")
    run.add_argument("--out", metavar="RUN_DIR", help="run directory to create (required "
                     "unless --resume)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run (a "
                     "finished one is left as it is)")
    run.add_argument("--patience", type=int, default=None, metavar="N",
                     help="early stopping: end after N epochs without a better validation "
                     f"figure, keeping the best epoch (default: {GIVEN_PATIENCE} on given splits; "
                     "elsewhere every epoch, as the papers). Also --set patience=N")
    run.add_argument("--refit", choices=("true", "false"), default=None,
                     help="given splits: after choosing the epoch on the validation carve, train "
                     "again on the whole training rows for that many epochs (default true on "
                     "given splits). Also --set refit=false")
    run.add_argument("--log", choices=("tensorboard",), action="append", default=[],
                     help="also log every epoch's figures: tensorboard (RUN_DIR/tensorboard; "
                     "needs pip install 'aerec[tensorboard]')")
    run.add_argument("--json", action="store_true", help="print the metrics as JSON")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_command)


# -- the run spec of the arguments ----------------------------------------------------------------
def spec_from_args(args: argparse.Namespace) -> dict:
    """The run spec (data, preprocessing, split, model, hyperparameters) of the arguments,
    checked; the hyperparameters are checked by :func:`aerec.runs.typed_spec`."""
    from aerec.config import parse_assignments
    from aerec.data.datasets import DATASETS, PAPER_PROTOCOLS
    from aerec.data.explicit_splits import CANONICAL_FOLDS
    from aerec.data.readers import resolve_data_argument
    from aerec.models import get_model_class

    if not args.model:
        raise ConfigError("--model is required")
    if bool(args.data) == bool(args.train):
        raise ConfigError("give either --data NAME|FILE or --train FILE [--test FILE]")
    model_cls = get_model_class(args.model)
    params = parse_assignments(args.set)
    columns = {k: v for k, v in (("user_col", args.user_col), ("item_col", args.item_col),
               ("rating_col", args.rating_col), ("timestamp_col", args.timestamp_col)) if v}
    source, value = resolve_data_argument(args.data, DATASETS) if args.data else ("file", None)
    protocol = PAPER_PROTOCOLS.get(value) if source == "dataset" else None
    if source == "dataset":
        data = {"dataset": value, "data_dir": args.data_dir}
        kind = args.split or "strong"
    else:  # --train FILE [--test FILE], or --data FILE (your own interactions)
        train_file = Path(value) if value is not None else Path(args.train)
        data = {"train": str(train_file.resolve()),
                "test": str(Path(args.test).resolve()) if args.test else None,
                "format": args.format, "columns": columns}
        kind = args.split or ("strong" if args.data else "given")
    if args.duplicates:
        data["duplicates"] = args.duplicates
    if args.item_table:
        data["item_table"] = str(Path(args.item_table).resolve())
    _check_number("--seed", args.seed, low=0, high=2**32 - 1)
    split: dict = {"kind": kind, "seed": args.seed}
    if kind == "strong":
        split["n_heldout"] = _heldout(args.heldout, protocol.n_heldout if protocol
                                      else DEFAULT_HELDOUT_FRACTION)
        if protocol:
            split["test_prop"] = protocol.test_prop
    if kind != "strong":
        _check_fraction("--validation-fraction", args.validation_fraction)
        split["validation_fraction"] = args.validation_fraction
    if kind == "random":
        _check_fraction("--test-fraction", args.test_fraction)
        split["test_fraction"] = args.test_fraction
    if kind == "time":
        if args.cutoff is None:
            raise ConfigError("--split time needs --cutoff DATE (for example 2005-12-01)")
        split["cutoff"] = args.cutoff
    if kind in CANONICAL_FOLDS and args.data != "ml-100k":
        raise ConfigError(f"--split {kind} is a fold of MovieLens 100K: use --data ml-100k")
    # The paper's preprocessing for its data sets; the reference notebook's elsewhere. Rating
    # models keep every rating unless asked: a count filter would drop test users silently.
    min_rating = _default(args.min_rating, protocol.threshold if protocol else 3.5)
    min_user = _default(args.min_user, protocol.min_user if protocol
                        else 5 if model_cls.implicit else 0)
    min_item = _default(args.min_item, protocol.min_item if protocol else 0)
    if min_rating is not None:
        _check_number("--min-rating", min_rating)
    _check_number("--min-user", min_user, low=0)
    _check_number("--min-item", min_item, low=0)
    preprocess = {"threshold": min_rating if model_cls.implicit else None,
                  "min_user": min_user, "min_item": min_item}
    return {"model": args.model, "params": params, "data": data, "preprocess": preprocess,
            "split": split, "training": _training(args, params, kind)}


#: Early stopping's patience on given splits, where no paper fixes the number of epochs.
GIVEN_PATIENCE = 20


def _training(args: argparse.Namespace, params: dict, kind: str) -> dict:
    """The run's training options: ``--patience`` / ``--refit``, or the same names in ``--set``
    (taken out of the hyperparameters), else the defaults of the split kind."""
    given = kind == "given"
    patience = params.pop("patience", None) if args.patience is None else args.patience
    refit = params.pop("refit", None) if args.refit is None else args.refit
    patience = GIVEN_PATIENCE if patience is None and given else patience
    refit = given and args.model != "blend" if refit is None else refit
    if isinstance(patience, str):
        patience = None if patience.lower() in ("none", "null", "") else _whole(patience, "patience")
    if isinstance(refit, str):
        if refit.lower() not in ("true", "false"):
            raise ConfigError(f"refit must be true or false, got {refit!r}")
        refit = refit.lower() == "true"
    if refit and not given:
        raise ConfigError("--refit is for given splits (--train/--test): other splits choose "
                          "their model on other users or keep the paper's protocol")
    if refit and args.model == "blend":
        raise ConfigError("--refit is not available for blend: its weights are chosen on the "
                          "validation carve; use --refit false")
    return {"patience": patience, "refit": bool(refit)}


def _whole(value: str, name: str) -> int:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if not math.isfinite(number) or not number.is_integer():
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    return int(number)



def _default(value, default):
    return default if value is None else value


def _heldout(value: str | None, default: int | float) -> int | float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"--heldout must be a count or a fraction, got {value!r}") from None
    if not math.isfinite(number) or number <= 0 or number > 2**31:
        raise ConfigError(f"--heldout must be a count (1 or more) or a fraction in (0, 1), "
                          f"got {value!r}")
    if number >= 1 and not number.is_integer():
        raise ConfigError(f"--heldout: a count must be a whole number, got {value!r}")
    return int(number) if number >= 1 else number


def _check_number(flag: str, value: float, low: float | None = None,
                  high: float | None = None) -> None:
    if not math.isfinite(value) or (low is not None and value < low) or (
            high is not None and value > high):
        bounds = f" in [{low}, {high}]" if high is not None else f" >= {low}" if low is not None else ""
        raise ConfigError(f"{flag} must be a finite number{bounds}, got {value!r}")


def _check_fraction(flag: str, value: float) -> None:
    if not math.isfinite(value) or not 0 < value < 1:
        raise ConfigError(f"{flag} must be a fraction in (0, 1), got {value!r}")


# -- the command ----------------------------------------------------------------------------------
def run_command(args: argparse.Namespace) -> int:
    from aerec.distributed import launched_by_torchrun
    from aerec.hardware import keep_freed_memory

    keep_freed_memory()  # this command owns its process: reuse freed memory (aerec.hardware)
    if launched_by_torchrun():
        return _run_distributed(args)
    prepared = _prepare(args)
    if prepared is None:
        return 0
    run_dir, resume = prepared
    return _train_and_report(args, run_dir, resume)


def _open_for_resume(path: str) -> tuple[Any, dict[str, Any], bool, bool]:
    """``(layout, spec, complete, resumable)`` of the run at ``path``, checked for ``--resume``."""
    from aerec.run_dir import RunDir

    layout = RunDir(path)
    spec = layout.read_spec()
    if layout.is_complete():
        return layout, spec, True, False
    for checkpoint in (layout.checkpoint, layout.refit_checkpoint):
        if (checkpoint.exists() or checkpoint.is_symlink()) and not checkpoint.is_file():
            raise ConfigError(f"{checkpoint}: not a regular file; remove it to train from "
                              "the start, or put the checkpoint back")
    return layout, spec, False, layout.can_resume()


def _prepare(args: argparse.Namespace) -> tuple[Path, bool] | None:
    """The run directory to train and whether to resume; None when the run is already complete.

    A new run is checked whole (arguments, hyperparameters, the place) before anything is written.
    """
    from aerec.runs import new_run

    if args.resume:
        layout, _, complete, resume = _open_for_resume(args.resume)
        if complete:
            print(f"{layout.path}: the run is complete (metrics.json); nothing to do. "
                  f"See it with: aerec evaluate {layout.path}")
            return None
        return layout.path, resume
    if not args.out:
        raise ConfigError("--out RUN_DIR is required (or --resume RUN_DIR)")
    spec = spec_from_args(args)
    if args.beta_search:
        from aerec.beta_search import check_beta_search

        check_beta_search(spec["model"])
    run_dir = new_run(args.out, spec)
    if args.beta_search:
        _beta_search(run_dir, quiet=args.quiet)
    return run_dir, False


def _callbacks(args: argparse.Namespace, run_dir: Path) -> tuple:
    from aerec.run_dir import RunDir
    from aerec.training import TensorBoardLogger

    return tuple(TensorBoardLogger(RunDir(run_dir).tensorboard) for log in args.log
                 if log == "tensorboard")


def _train_and_report(args: argparse.Namespace, run_dir: Path, resume: bool,
                      processes: int = 1) -> int:
    from aerec.runs import train_run

    metrics = train_run(run_dir, resume=resume, callbacks=_callbacks(args, run_dir),
                        progress=not args.quiet)
    print_metrics(metrics, as_json=args.json)
    if not args.json:
        print(f"run directory: {run_dir}" + (f" ({processes} processes)" if processes > 1 else ""))
    return 0


def _beta_search(run_dir: Path, *, quiet: bool) -> None:
    """``--beta-search``: the search with a progress bar, before the training it configures."""
    from aerec.beta_search import beta_search_run
    from aerec.run_dir import RunDir

    search = beta_search_run(run_dir, progress=not quiet)
    print(f"beta search: beta = {search.best_beta:.4f} (epoch {search.best_epoch}, validation "
          f"NDCG@100 {search.best_ndcg:.4f}); plot: {RunDir(run_dir).beta_search_plot}")


# -- under torchrun -------------------------------------------------------------------------------
def _run_distributed(args: argparse.Namespace) -> int:
    """``aerec train`` in a process that torchrun started: every process trains its share; rank 0
    alone creates and writes the run directory, shows progress and prints the metrics.

    The other processes get the run's spec from rank 0, and its split from the run directory when
    they can read it (one machine, or a shared disk), else by preparing it themselves from the
    same data and seed (each machine then needs the data, e.g. under ``AEREC_DATA_DIR``).
    """
    from aerec import distributed as dist
    from aerec.run_dir import RunDir
    from aerec.runs import load_split, make_split, model_of, new_run, read_run, trainer_options
    from aerec.models import get_model_class
    from aerec.training import Trainer

    if args.beta_search:
        raise ConfigError("--beta-search does not run under torchrun; run it in one process")
    main = int(os.environ.get("RANK", "0")) == 0
    spec = run_dir = None
    resume = complete = False
    if main:
        if args.resume:
            layout, spec, complete, resume = _open_for_resume(args.resume)
            run_dir = layout.path
        else:
            if not args.out:
                raise ConfigError("--out RUN_DIR is required (or --resume RUN_DIR)")
            spec = spec_from_args(args)
    dist.init(device="cpu")  # the group first; the GPU once every process knows the spec
    finished = False
    try:
        if main and not args.resume:
            run_dir = new_run(args.out, spec)
            spec = read_run(run_dir)
        message = dist.broadcast_bytes(json.dumps({
            "spec": spec, "run_dir": str(run_dir), "resume": resume, "complete": complete,
        }).encode() if main else None)
        shared = json.loads(message.decode())
        if shared["complete"]:
            if main:
                print(f"{run_dir}: the run is complete (metrics.json); nothing to do")
            finished = True
            return 0
        spec, resume = shared["spec"], shared["resume"]
        dist.local_device(str(spec.get("params", {}).get("device", "auto")))
        if main:
            if resume:
                dist.broadcast_file(RunDir(run_dir).checkpoint, run_dir)
            status = _train_and_report(args, Path(run_dir), resume, dist.world_size())
            finished = True
            return status
        split_dir = RunDir(shared["run_dir"]).split
        split = load_split(split_dir) if split_dir.is_dir() else make_split(
            spec, get_model_class(spec["model"]))
        options = trainer_options(spec.get("training") or {})
        with tempfile.TemporaryDirectory(prefix="aerec-rank-") as tmp:
            checkpoint = dist.broadcast_file(None, tmp) if resume else None
            Trainer(checkpoint=checkpoint, resume=checkpoint is not None,
                    **options).fit(model_of(spec), split.train, split.validation)
        finished = True
        return 0
    finally:
        # After a failure the others may never reach the barrier: leave without waiting.
        dist.shutdown(wait_for_others=finished)
