"""``aerec train``: prepare a run directory, train, select on validation, evaluate on test."""

from __future__ import annotations

import argparse
from pathlib import Path

from aerec.cli.common import EpochProgress, print_metrics
from aerec.config import parse_assignments
from aerec.errors import ConfigError
from aerec.models import REGISTRY, get_model_class
from aerec.runs import DEFAULT_HELDOUT, DEFAULT_HELDOUT_FRACTION, new_run, read_run, train_run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model and evaluate it on test users",
        description="Train a model, keep the epoch with the best validation NDCG@100 (RMSE for "
        "rating models), evaluate it on the test users and write RUN_DIR/metrics.json.",
    )
    src = p.add_argument_group("data")
    src.add_argument("--data", metavar="NAME", help="dataset name (ml-100k, ml-1m, ml-10m, "
                     "ml-20m, ml-25m, ml-latest-small): looked up in --data-dir / AEREC_DATA_DIR, "
                     "then the cache, else downloaded")
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
    pre = p.add_argument_group("preprocessing and split")
    pre.add_argument("--min-rating", type=float, default=3.5,
                     help="implicit models keep ratings above this (default 3.5, the paper's)")
    pre.add_argument("--min-user", type=int, default=None,
                     help="drop users with fewer interactions (default 5; 0 for rating models)")
    pre.add_argument("--min-item", type=int, default=0,
                     help="drop items with fewer interactions (default 0)")
    pre.add_argument("--split", default=None,
                     help="strong (default for --data), given (default for --train/--test); "
                     "rating models add u1..u5, random and time")
    pre.add_argument("--heldout", default=None,
                     help="held-out users for validation and for test each: a count, or a "
                     f"fraction (default {DEFAULT_HELDOUT_FRACTION}; 10000 for ml-20m)")
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
    mdl.add_argument("--model", choices=sorted(REGISTRY), help="model to train")
    mdl.add_argument("--set", action="append", metavar="NAME=VALUE", default=[],
                     help="set a hyperparameter, e.g. --set epochs=50 (repeatable)")
    mdl.add_argument("--beta-search", action="store_true",
                     help="mult-vae: anneal beta to 1 once, pick the beta of the best validation "
                     "NDCG@100, then train with it (writes beta_search.png / .json)")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory to create")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def spec_from_args(args: argparse.Namespace) -> dict:
    """The run spec (data, preprocessing, split, model, hyperparameters) of the arguments."""
    if not args.model:
        raise ConfigError("--model is required")
    if bool(args.data) == bool(args.train):
        raise ConfigError("give either --data NAME or --train FILE [--test FILE]")
    model_cls = get_model_class(args.model)
    params = parse_assignments(args.set)
    if args.data:
        data = {"dataset": args.data, "data_dir": args.data_dir}
        kind = args.split or "strong"
    else:
        columns = {k: v for k, v in (("user_col", args.user_col), ("item_col", args.item_col),
                   ("rating_col", args.rating_col), ("timestamp_col", args.timestamp_col)) if v}
        data = {"train": str(Path(args.train).resolve()),
                "test": str(Path(args.test).resolve()) if args.test else None,
                "format": args.format, "columns": columns}
        kind = args.split or "given"
    split: dict = {"kind": kind, "seed": args.seed}
    if kind == "strong":
        split["n_heldout"] = _heldout(args.heldout, args.data)
    if kind != "strong":
        split["validation_fraction"] = args.validation_fraction
    if kind == "random":
        split["test_fraction"] = args.test_fraction
    if kind == "time":
        split["cutoff"] = args.cutoff
    # Rating models keep every rating unless asked: a count filter would drop test users silently.
    min_user = args.min_user if args.min_user is not None else (5 if model_cls.implicit else 0)
    preprocess = {"threshold": args.min_rating if model_cls.implicit else None,
                  "min_user": min_user, "min_item": args.min_item}
    return {"model": args.model, "params": params, "data": data, "preprocess": preprocess,
            "split": split}


def _heldout(value: str | None, dataset: str | None) -> int | float:
    if value is None:
        return DEFAULT_HELDOUT.get(dataset or "", DEFAULT_HELDOUT_FRACTION)
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"--heldout must be a count or a fraction, got {value!r}") from None
    return int(number) if number >= 1 else number


def run(args: argparse.Namespace) -> int:
    from aerec.distributed import launched_by_torchrun, train_cli
    from aerec.hardware import keep_freed_memory

    keep_freed_memory()  # this command owns its process: reuse freed memory (aerec.hardware)
    if launched_by_torchrun():
        return train_cli(args, spec_from_args)
    if args.resume:
        run_dir = Path(args.resume)
        spec = read_run(run_dir)
        resume = (run_dir / "checkpoint.safetensors").exists()
    else:
        if not args.out:
            raise ConfigError("--out RUN_DIR is required (or --resume RUN_DIR)")
        spec = spec_from_args(args)
        if args.beta_search:
            from aerec.beta_search import beta_search_cli, check_beta_search

            check_beta_search(spec["model"])
        run_dir = new_run(args.out, spec)
        resume = False
        if args.beta_search:
            spec = beta_search_cli(run_dir, quiet=args.quiet)
    epochs = int(spec.get("params", {}).get("epochs", getattr(
        get_model_class(spec["model"]).Config(), "epochs", 0)))
    done = _epochs_done(run_dir) if resume else 0
    bar = EpochProgress(epochs, done, enabled=not args.quiet)
    try:
        metrics = train_run(run_dir, resume=resume, callbacks=(bar,), progress=not args.quiet)
    finally:
        bar.close()
    print_metrics(metrics, as_json=args.json)
    if not args.json:
        print(f"run directory: {run_dir}")
    return 0


def _epochs_done(run_dir: Path) -> int:
    from aerec.persistence import load_state

    try:
        state, _ = load_state(run_dir / "checkpoint.safetensors")
        return int(state["epoch"])
    except Exception:  # the bar's starting point only
        return 0
