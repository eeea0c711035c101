"""``aerec train``: prepare a run directory, train, select on validation, evaluate on test.

Also the launcher under ``torchrun`` (data-parallel training: rank 0 prepares and writes the run
directory, every process trains its share) and the Mult-VAE beta search (``--beta-search``).
Nothing heavy is imported at module level: ``aerec train --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from aerec.cli.common import MODEL_NAMES, print_metrics
from aerec.errors import ConfigError

from aerec.data.options import DEFAULT_HELDOUT_FRACTION
from aerec.run_spec import GIVEN_PATIENCE


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
    pre.add_argument("--validation-fraction", type=float, default=None,
                     help="given and rating splits: share of the training interactions held "
                     "out for validation (default 0.1)")
    pre.add_argument("--test-fraction", type=float, default=None,
                     help="random split: share of the ratings held out for test (default 0.1)")
    pre.add_argument("--unseen-test-items", choices=("keep", "drop"),
                     help="given splits: test items absent from the training file are kept, "
                     "counting as misses (LightGCN's protocol, the default of --format lightgcn) "
                     "or dropped (the default elsewhere); either way their count is reported")
    pre.add_argument("--cutoff", metavar="DATE",
                     help="time split: train before DATE (2005-12-01, ISO or Unix seconds), test "
                     "from it on")
    pre.add_argument("--seed", type=int, default=None, help="split seed (default 98765)")
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
                     "finished one is left as it is); it keeps the settings of its run.json")
    run.add_argument("--overwrite", action="store_true", help="replace the aerec run already "
                     "at --out (a folder that is not a run is never written into)")
    run.add_argument("--patience", type=int, default=None, metavar="N",
                     help="early stopping: end after N epochs without a better validation "
                     f"figure, keeping the best epoch (default: {GIVEN_PATIENCE} on given splits; "
                     "elsewhere every epoch, as the papers). Also --set patience=N")
    run.add_argument("--refit", choices=("true", "false"), default=None,
                     help="given splits: after choosing the epoch on the validation carve, train "
                     "again on the whole training rows for that many epochs (default true on "
                     "given splits)")
    run.add_argument("--choose", choices=("true", "false"), default=None,
                     help="choose the hyperparameters the papers tuned per data set (EASE/EDLAE "
                     "lam and dropout, Mult-VAE's beta cap, RecVAE's gamma) on the validation "
                     "users first (default true on your own data and given splits, unless --set "
                     "gives them; false for the papers' data sets); see docs/choice.md")
    run.add_argument("--log", choices=("tensorboard",), action="append", default=[],
                     help="also log every epoch's figures: tensorboard (RUN_DIR/tensorboard; "
                     "needs pip install 'aerec[tensorboard]')")
    run.add_argument("--json", action="store_true", help="print the metrics as JSON")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_command)


# -- the run spec of the arguments ----------------------------------------------------------------
#: Options that describe the run (flag -> argparse dest); a resumed run keeps run.json's.
_RUN_OPTIONS = {
    "--data": "data", "--data-dir": "data_dir", "--train": "train", "--test": "test",
    "--format": "format", "--user-col": "user_col", "--item-col": "item_col",
    "--rating-col": "rating_col", "--timestamp-col": "timestamp_col", "--min-rating": "min_rating",
    "--min-user": "min_user", "--min-item": "min_item", "--split": "split", "--heldout": "heldout",
    "--validation-fraction": "validation_fraction", "--test-fraction": "test_fraction",
    "--cutoff": "cutoff", "--unseen-test-items": "unseen_test_items", "--seed": "seed", "--model": "model", "--set": "set",
    "--beta-search": "beta_search", "--out": "out", "--patience": "patience", "--refit": "refit",
    "--overwrite": "overwrite", "--choose": "choose", "--duplicates": "duplicates", "--item-table": "item_table",
}
#: Training options that are not hyperparameters: refused in --set, with the flag to use.
_TRAINING_FLAGS = {"patience": "--patience N", "refit": "--refit true|false"}


def spec_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~aerec.run_spec.RunSpec` of the arguments: they only fill in
    :meth:`RunSpec.create`, which holds the defaults and the checks."""
    from aerec.config import parse_assignments
    from aerec.run_spec import RunSpec

    if not args.model:
        raise ConfigError("--model is required")
    if bool(args.data) == bool(args.train):
        raise ConfigError("give either --data NAME|FILE or --train FILE [--test FILE]")
    if args.test and not args.train:
        raise ConfigError("--test goes with --train FILE")
    params = parse_assignments(args.set)
    for name, flag in _TRAINING_FLAGS.items():
        if name in params:
            raise ConfigError(f"--set {name}: {name} is a training option, not a hyperparameter; "
                              f"use {flag}")
    columns = {k: v for k, v in (("user_col", args.user_col), ("item_col", args.item_col),
               ("rating_col", args.rating_col), ("timestamp_col", args.timestamp_col)) if v}
    refit = None if args.refit is None else args.refit == "true"
    choose = None if args.choose is None else args.choose == "true"
    if args.beta_search:  # the paper's own search of the beta cap, instead of the choice
        choose = False
    return RunSpec.create(
        args.model, args.data, train=args.train, test=args.test, format=args.format,
        columns=columns, duplicates=args.duplicates, item_table=args.item_table,
        data_dir=args.data_dir, params=params, split=args.split,
        seed=args.seed, heldout=args.heldout, validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction, cutoff=args.cutoff,
        unseen_test_items=args.unseen_test_items, min_rating=args.min_rating,
        min_user=args.min_user, min_item=args.min_item, patience=args.patience, refit=refit,
        choose=choose)


def check_resume_options(args: argparse.Namespace, spec: Any, run_dir: Path) -> None:
    """Refuse, in one line naming it, an option given with ``--resume`` that the run does not
    have: a resumed run is the run of its ``run.json``, whatever else the command line says."""
    from aerec.config import config_to_dict, make_config, parse_assignments
    from aerec.models import get_model_class

    given = {flag: getattr(args, dest) for flag, dest in _RUN_OPTIONS.items()
             if getattr(args, dest, None) not in (None, False, [], "auto")}
    if "--model" in given and given.pop("--model") != spec.model:
        raise ConfigError(f"--model {args.model}: the run at {run_dir} trains {spec.model}; a "
                          "resumed run keeps its settings (leave --model out)")
    if "--set" in given:
        values = parse_assignments(given.pop("--set"))
        model_cls = get_model_class(spec.model)
        asked = config_to_dict(make_config(model_cls.Config, {**spec.params, **values},
                                           owner=model_cls.name))
        for name in values:
            if asked[name] != spec.params[name]:
                raise ConfigError(f"--set {name}={values[name]}: the run at {run_dir} has "
                                  f"{name}={spec.params[name]!r}; a resumed run keeps its "
                                  "settings (leave --set out, or start a new run with --out)")
    same = {"--patience": lambda v: v == spec.training.patience,
            "--refit": lambda v: (v == "true") == spec.training.refit,
            "--seed": lambda v: v == spec.split.seed,
            "--out": lambda v: Path(v).resolve() == run_dir.resolve()}
    for flag, agrees in same.items():
        if flag in given and agrees(given[flag]):
            given.pop(flag)
    if given:
        flag = next(iter(given))
        raise ConfigError(f"{flag}: a resumed run keeps the settings of {run_dir / 'run.json'}; "
                          f"leave {flag} out (or start a new run with --out)")


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


def _open_for_resume(args: argparse.Namespace) -> tuple[Any, Any, bool, bool]:
    """``(layout, spec, complete, resumable)`` of the run at ``--resume``, checked: the other
    options must not ask for another run."""
    from aerec.run_dir import RunDir
    from aerec.run_spec import RunSpec

    layout = RunDir(args.resume)
    spec = RunSpec.load(layout.path)
    check_resume_options(args, spec, layout.path)
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
        layout, _, complete, resume = _open_for_resume(args)
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

        check_beta_search(spec.model)
    run_dir = new_run(args.out, spec, overwrite=args.overwrite)
    from aerec.run_spec import RunSpec

    prepared = RunSpec.load(run_dir)
    _print_data_counts(prepared)
    _print_choice(prepared)
    if args.beta_search:
        _beta_search(run_dir, quiet=args.quiet)
    return run_dir, False


def _print_choice(spec: Any) -> None:
    """One line on stderr: what was chosen on validation, over how many values, in how long."""
    import sys

    choice = spec.choice
    if not choice:
        return
    parts = [f"{name}={entry['chosen']:.4g} of {len(entry['tried'])} values"
             for name, entry in choice["params"].items()]
    print(f"choice on validation {choice['metric']} ({choice['method']}, "
          f"{choice['seconds']:.1f} s): {', '.join(parts)}; --choose false keeps the defaults",
          file=sys.stderr)


def _print_data_counts(spec: Any) -> None:
    """When a filter removed users or items, or users are kept out of evaluation: one line on
    stderr with the users and items the run kept and what was removed (nothing goes silently)."""
    import sys

    r = spec.resolved
    parts = [f"{r.get('training_users', 0):,} training, {r.get('validation_users', 0):,} "
             f"validation and {r.get('test_users', 0):,} test users, {r.get('items', 0):,} items"]
    pre = spec.preprocess
    if not (r.get("users_dropped") or r.get("items_dropped") or r.get("users_not_evaluated")):
        return
    if r.get("users_dropped") or r.get("items_dropped"):
        parts.append(f"dropped by the filters (min-user {pre.min_user}, min-item {pre.min_item}"
                     + (f", ratings above {pre.threshold:g}" if pre.threshold is not None else "")
                     + f"): {r.get('users_dropped', 0):,} users, {r.get('items_dropped', 0):,} "
                     "items")
    if r.get("users_not_evaluated"):
        parts.append(f"{r['users_not_evaluated']:,} users with fewer than {pre.min_user} "
                     "interactions are trained on and get recommendations, but are not evaluated")
    print("data: " + "; ".join(parts), file=sys.stderr)


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
    from aerec.runs import beta_search_run
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
    from aerec.run_spec import RunSpec
    from aerec.runs import load_split, make_split, model_of, new_run, read_run, trainer_options
    from aerec.training import Trainer

    if args.beta_search:
        raise ConfigError("--beta-search does not run under torchrun; run it in one process")
    main = int(os.environ.get("RANK", "0")) == 0
    spec = run_dir = None
    resume = complete = False
    if main:
        if args.resume:
            layout, spec, complete, resume = _open_for_resume(args)
            run_dir = layout.path
        else:
            if not args.out:
                raise ConfigError("--out RUN_DIR is required (or --resume RUN_DIR)")
            spec = spec_from_args(args)
    dist.init(device="cpu")  # the group first; the GPU once every process knows the spec
    finished = False
    try:
        if main and not args.resume:
            run_dir = new_run(args.out, spec, overwrite=args.overwrite)
            spec = read_run(run_dir)
        message = dist.broadcast_bytes(json.dumps({
            "spec": spec.to_json() if main else None, "run_dir": str(run_dir), "resume": resume,
            "complete": complete,
        }).encode() if main else None)
        shared = json.loads(message.decode())
        if shared["complete"]:
            if main:
                print(f"{run_dir}: the run is complete (metrics.json); nothing to do")
            finished = True
            return 0
        spec, resume = RunSpec.from_json(shared["spec"]), shared["resume"]
        dist.local_device(str(spec.params.get("device", "auto")))
        if main:
            if resume:
                dist.broadcast_file(RunDir(run_dir).checkpoint, run_dir)
            status = _train_and_report(args, Path(run_dir), resume, dist.world_size())
            finished = True
            return status
        split_dir = RunDir(shared["run_dir"]).split
        split = load_split(split_dir) if split_dir.is_dir() else make_split(spec)
        options = trainer_options(spec.training)
        with tempfile.TemporaryDirectory(prefix="aerec-rank-") as tmp:
            checkpoint = dist.broadcast_file(None, tmp) if resume else None
            Trainer(checkpoint=checkpoint, resume=checkpoint is not None,
                    **options).fit(model_of(spec), split.train, split.validation)
        finished = True
        return 0
    finally:
        # After a failure the others may never reach the barrier: leave without waiting.
        dist.shutdown(wait_for_others=finished)
