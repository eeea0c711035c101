"""Benchmark: the explicit-rating models on the RMSE protocols.

Protocols
    * ML-100K ``u1.base`` / ``u1.test`` (every one of the 20,000 test ratings counts; the 32 of
      items absent from ``u1.base`` get the fallback rating, the training mean);
    * the 5-fold average over ``u1`` .. ``u5`` (mean and sample standard deviation);
    * ml-latest-small, a random 90/10 per-rating holdout repeated over 5 seeds (mean and sample
      standard deviation).

Models: I-AutoRec, U-AutoRec, the deep autoencoder with and without dense re-feeding, and biased
MF. Selection uses validation only: 10 % of each training set is carved out, every epoch is scored
on it, and the epoch with the lowest validation RMSE is kept; the test set is scored once, at the
end. Predictions are clipped to the training rating range.

Timing: seconds per training epoch (without the validation pass) and total seconds per run
(split, training with validation, test). CPU timings on a shared machine are noisy, so a fixed
floor workload (a 1024 x 1024 float32 matrix product, repeated) is timed at the start and the end
of the run in the same process and the table also gives seconds per epoch as a multiple of it.

Usage::

    AEREC_DATA_DIR=../shared/data python benchmarks/explicit.py [--out FILE] [--json FILE]
        [--threads 1] [--folds 5] [--seeds 5] [--models i-autorec,...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

from aerec.data.datasets import find_dataset, load_dataset
from aerec.data.explicit_splits import canonical_fold, random_holdout
from aerec.models import get_model_class

#: Hyperparameters of each table row, chosen on the u1 validation RMSE only (the search is listed
#: in RESULTS-explicit.md), and the per-data-set epoch caps (the epoch kept is the best on
#: validation; on ml-latest-small, with 5x more items, I-AutoRec takes 5x more steps per epoch
#: and its validation RMSE is lowest after about 5 epochs).
MODELS: dict[str, tuple[str, dict, dict]] = {
    "I-AutoRec": ("i-autorec", {"hidden": (500,), "lam": 200.0, "lr": 0.001, "batch_size": 256,
                                "epochs": 120}, {"ml-latest-small": {"epochs": 20}}),
    "U-AutoRec": ("u-autorec", {"hidden": (500,), "lam": 200.0, "lr": 0.001, "batch_size": 128,
                                "epochs": 120}, {}),
    "Deep AE (re-feeding)": ("deep-ae", {"hidden": (256, 256, 512), "dropout": 0.8,
                                         "refeed": True, "optimizer": "adam", "lr": 0.001,
                                         "weight_decay": 0.001, "batch_size": 128,
                                         "epochs": 40}, {"ml-latest-small": {"epochs": 25}}),
    "Deep AE (no re-feeding)": ("deep-ae", {"hidden": (256, 256, 512), "dropout": 0.8,
                                            "refeed": False, "optimizer": "adam", "lr": 0.001,
                                            "weight_decay": 0.001, "batch_size": 128,
                                            "epochs": 40}, {"ml-latest-small": {"epochs": 25}}),
    "Biased MF": ("biased-mf", {"factors": 64, "lam": 0.1, "lr": 0.002, "batch_size": 1024,
                                "epochs": 40}, {}),
}
SEEDS = [98765, 1, 2, 3, 4]
VALIDATION_FRACTION = 0.1
ANCHORS = [("GC-MC (Berg et al. 2017)", 0.910), ("IGMC (Zhang & Chen 2020)", 0.905),
           ("GLocal-K (Han et al. 2021; epoch chosen on the test set)", 0.889)]


def floor_seconds(repeats: int = 20) -> float:
    """Seconds of a fixed CPU workload: ``repeats`` products of 1024 x 1024 float32 matrices."""
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(1024, 1024, generator=gen)
    b = torch.rand(1024, 1024, generator=gen)
    a @ b  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return time.perf_counter() - started


def run_one(label: str, dataset: str, split) -> dict:
    """Fit one table row's model on a split with validation selection; test metrics and timing."""
    name, params, per_dataset = MODELS[label]
    params = {**params, **per_dataset.get(dataset, {})}
    started = time.perf_counter()
    model = get_model_class(name)(device="cpu", **params)
    model.fit(split.train, split.validation)
    metrics = model.evaluate_ratings(split.test)
    history = model.history_
    return {
        "rmse": metrics["rmse"], "mae": metrics["mae"], "n_ratings": metrics["n_ratings"],
        "best_epoch": model.best_epoch_, "epochs": len(history),
        "val_rmse": min(h["val_rmse"] for h in history),
        "seconds_per_epoch": statistics.mean(h["train_seconds"] for h in history),
        "total_seconds": time.perf_counter() - started,
    }


def per_epoch(runs: list[dict]) -> str:
    """Mean seconds per training epoch, and as a multiple of the floor of the same run."""
    seconds = statistics.mean(r["seconds_per_epoch"] for r in runs)
    ratio = statistics.mean(r["seconds_per_epoch"] / r["floor_seconds"] for r in runs)
    return f"{seconds:.2f} ({ratio:.2f})"


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the Markdown table to this file")
    parser.add_argument("--json", help="write every run's figures to this JSON file")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared 2-core machine one thread is "
                        "faster than two)")
    parser.add_argument("--folds", type=int, default=5, help="ML-100K folds u1..uK (default 5)")
    parser.add_argument("--seeds", type=int, default=5, help="ml-latest-small seeds (default 5)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated row labels to run (default: all)")
    parser.add_argument("--datasets", default="ml-100k,ml-latest-small",
                        help="comma-separated data sets to run (default: both)")
    parser.add_argument("--reuse", metavar="JSON",
                        help="take every (row, data set) not run now from this earlier --json file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    labels = [m.strip() for m in args.models.split(",") if m.strip()]
    for label in labels:
        if label not in MODELS:
            sys.exit(f"unknown row {label!r}; known: {', '.join(MODELS)}")

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    began = time.perf_counter()
    floors = [floor_seconds()]
    splits = {}
    if "ml-100k" in datasets:
        ml100k = find_dataset("ml-100k")
        splits["ml-100k"] = [(f"u{k}", canonical_fold(ml100k, k, validation_fraction=VALIDATION_FRACTION))
                             for k in range(1, args.folds + 1)]
    if "ml-latest-small" in datasets:
        small = load_dataset("ml-latest-small")
        splits["ml-latest-small"] = [
            (f"seed {s}", random_holdout(small, test_fraction=0.1, seed=s,
                                         validation_fraction=VALIDATION_FRACTION))
            for s in SEEDS[:args.seeds]]
    earlier = json.loads(Path(args.reuse).read_text()) if args.reuse else {"results": {}}
    results: dict[str, dict[str, list[dict]]] = earlier["results"]
    for label in labels:
        results.setdefault(label, {})
        for dataset, parts in splits.items():
            results[label][dataset] = []
            for name, split in parts:
                results[label][dataset].append(run_one(label, dataset, split))
                print(f"{label:<26} {dataset} {name}: {results[label][dataset][-1]}", flush=True)
    floors.append(floor_seconds())
    # Seconds are reported as multiples of the floor of the run that measured them.
    for label in labels:
        for dataset in splits:
            for r in results[label][dataset]:
                r["floor_seconds"] = statistics.mean(floors)
    rows = [label for label in MODELS if label in results]
    table = render(results, rows, args)
    wall = time.perf_counter() - began
    footer = (f"\nWall time of the whole benchmark: {wall / 60:.1f} min; torch threads: "
              f"{args.threads}; floor (20 products of 1024 x 1024 float32 matrices): "
              f"{floors[0]:.3f} s at the start, {floors[1]:.3f} s at the end.")
    print()
    print(table + footer)
    if args.out:
        Path(args.out).write_text(table + footer + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "floors": floors,
                                               "settings": MODELS, "wall_seconds": wall}, indent=2))



def render(results: dict, labels: list[str], args) -> str:
    lines = [
        f"| model | ML-100K u1 RMSE (MAE) | ML-100K u1..u{args.folds} RMSE, mean ± sd "
        f"| ml-latest-small 90/10, {args.seeds} seeds, RMSE mean ± sd | s / epoch ML-100K "
        "(× floor) | s / epoch ml-latest-small (× floor) | total s (all runs) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label in labels:
        folds, small = results[label]["ml-100k"], results[label]["ml-latest-small"]
        u1 = folds[0]
        total = sum(r["total_seconds"] for r in folds + small)
        lines.append(
            f"| {label} | {u1['rmse']:.4f} ({u1['mae']:.4f}) | {mean_sd([r['rmse'] for r in folds])} "
            f"| {mean_sd([r['rmse'] for r in small])} | {per_epoch(folds)} | {per_epoch(small)} "
            f"| {total:.0f} |"
        )
    for name, value in ANCHORS:
        lines.append(f"| {name}, published | {value:.3f} | | | | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("AEREC_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    main()
