"""``aerec tune``: an Optuna study over a model's search space (``aerec[tune]``).

Trials are judged on the validation users only; the best configuration is retrained as an ordinary
run directory. Running the same command again resumes the study.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from aerec.cli.common import MODEL_NAMES
from aerec.config import parse_assignments
from aerec.errors import ConfigError
from aerec.extras import require


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune", help="tune hyperparameters with Optuna (validation users only)",
        description="Search the model's hyperparameters with Optuna: each trial trains on the "
        "training users and is scored by validation NDCG@100 (RMSE for rating models); poor "
        "trials are pruned by their per-epoch validation figure. The study lives in --storage "
        "and resumes when the command is run again. The best configuration is retrained into "
        "OUT/best (an ordinary run directory) and OUT/report.md lists the best trials, with "
        "Optuna's plots as PNG. Needs: pip install 'aerec[tune]'.",
    )
    # The data and split options of ``aerec train``, with the same meaning and defaults.
    src = p.add_argument_group("data")
    src.add_argument("--data", metavar="NAME", help="dataset name (as for aerec train)")
    src.add_argument("--data-dir", metavar="DIR", help="folder holding datasets by name")
    src.add_argument("--train", metavar="FILE", help="training file of a given split")
    src.add_argument("--test", metavar="FILE", help="test file of a given split")
    src.add_argument("--format", default="auto", help="format of --train/--test (default auto)")
    for column in ("user", "item", "rating", "timestamp"):
        src.add_argument(f"--{column}-col", help=f"{column} column (csv/tsv/parquet)")
    pre = p.add_argument_group("preprocessing and split")
    pre.add_argument("--min-rating", type=float, default=None,
                     help="implicit models keep ratings above this (default as for aerec train)")
    pre.add_argument("--min-user", type=int, default=None,
                     help="minimum interactions per user (default as for aerec train)")
    pre.add_argument("--min-item", type=int, default=None,
                     help="minimum interactions per item (default as for aerec train)")
    pre.add_argument("--split", default=None, help="split kind (as for aerec train)")
    pre.add_argument("--heldout", default=None,
                     help="held-out users per group: count or fraction (default as for aerec "
                     "train)")
    pre.add_argument("--validation-fraction", type=float, default=None,
                     help="given split: share of each user's items held out for validation")
    pre.add_argument("--seed", type=int, default=None, help="split seed (default 98765)")
    study = p.add_argument_group("study")
    study.add_argument("--model", choices=MODEL_NAMES, help="model to tune")
    study.add_argument("--trials", type=int, default=50,
                       help="finished trials the study should have, counting earlier sessions "
                       "(default 50)")
    study.add_argument("--set", action="append", metavar="NAME=VALUE", default=[],
                       help="fix a hyperparameter for every trial, e.g. --set epochs=3")
    study.add_argument("--storage", metavar="URL",
                       help="Optuna storage (default sqlite:///OUT/study.db)")
    study.add_argument("--study-name", help="default MODEL-DATASET")
    study.add_argument("--sampler-seed", type=int, default=0, help="TPE sampler seed (default 0)")
    study.add_argument("--no-prune", action="store_true", help="run every trial to the end")
    study.add_argument("--no-retrain", action="store_true",
                       help="do not retrain the best configuration into OUT/best")
    p.add_argument("--out", metavar="DIR", help="folder of the study (split, report, best "
                   "run); required")
    p.add_argument("--quiet", action="store_true", help="no line per trial")
    p.set_defaults(handler=run)


def _spec(args: argparse.Namespace) -> Any:
    """The run spec of the study's data and split options (the defaults of
    :meth:`aerec.run_spec.RunSpec.create`, as for ``aerec train``); the study sets the
    hyperparameters."""
    from aerec.run_spec import RunSpec

    if not args.model:
        raise ConfigError("--model is required")
    if bool(args.data) == bool(args.train):
        raise ConfigError("give either --data NAME|FILE or --train FILE [--test FILE]")
    columns = {role: getattr(args, role) for role in
               ("user_col", "item_col", "rating_col", "timestamp_col") if getattr(args, role)}
    return RunSpec.create(
        args.model, args.data, train=args.train, test=args.test, format=args.format,
        columns=columns, data_dir=args.data_dir, split=args.split, seed=args.seed,
        heldout=args.heldout, validation_fraction=args.validation_fraction,
        min_rating=args.min_rating, min_user=args.min_user, min_item=args.min_item)


def run(args: argparse.Namespace) -> int:
    require("optuna", "tune", "aerec tune")
    from aerec.paths import check_writable_run_dir
    from aerec.tuning import tune

    if not args.out:
        raise ConfigError("--out DIR is required")
    if args.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {args.trials}")
    check_writable_run_dir(args.out, subdirs=("split", "best"))
    spec = _spec(args)
    fixed = parse_assignments(args.set)
    _quiet_optuna()
    result = tune(spec, Path(args.out), n_trials=args.trials, storage=args.storage,
                  study_name=args.study_name, fixed=fixed, prune=not args.no_prune,
                  seed=args.sampler_seed, retrain=not args.no_retrain,
                  callbacks=() if args.quiet else (_print_trial,))
    print(f"study {result.study_name}: {result.n_trials} finished trials in {result.storage}")
    print(f"best: trial {result.best_trial}, validation value {result.best_value:.4f}")
    for name, value in result.best_params.items():
        print(f"{name:>24}  {value}")
    print(f"report: {result.report}")
    if result.run_dir is not None:
        print(f"best configuration retrained: {result.run_dir} (test metrics in metrics.json)")
    return 0


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _print_trial(study: Any, trial: Any) -> None:
    from aerec.tuning import epochs_cell

    value = "-" if trial.value is None else f"{trial.value:.4f}"
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in trial.params.items())
    print(f"trial {trial.number:>3} {trial.state.name.lower():>8}  value {value}  "
          f"epochs {epochs_cell(trial)}  {params}", file=sys.stderr, flush=True)
