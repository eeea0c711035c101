"""Benchmark: given train / test splits with and without the refit, with and without early stopping.

For ML-100K and ml-latest-small (ratings >= 4, users with >= 5 items), each seed draws a given split:
per user a random 80 % of the items to train, 20 % to test; aerec then carves 10 % of each user's
training items as validation (``given_split``). For Mult-VAE, Mult-DAE, RecVAE, EASE and EDLAE:

1. train with early stopping (patience 20) and a checkpoint, select on validation, evaluate the
   test users with that model (``refit=false``);
2. refit: repeat the selection run on the whole training rows (``aerec.runs.refit``: same seed,
   same schedule, stopped at the chosen epoch), and evaluate (the default of given splits);
3. resume the run of step 1 from its checkpoint without early stopping up to the model's full
   epochs (bit for bit the run that never stopped), and evaluate its selected model: today's
   behaviour, and the check that early stopping selected the same epoch.

Closed-form models have no epochs: their refit is the same fit on the whole training rows.
Results go to a JSON file cell by cell (a rerun skips the cells it has) and a Markdown table is
printed: Recall@20 and NDCG@20, mean ± standard error over the seeds, the paired difference of the
refit, the epochs run with and without early stopping, and the wall time of each variant.

Usage::

    AEREC_DATA_DIR=../shared/data python benchmarks/given.py [--seeds 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SEEDS = [98765, 1, 2, 3, 4]
DATASETS = ["ml-100k", "ml-latest-small"]
MODELS = ["mult-vae", "mult-dae", "recvae", "ease", "edlae"]
PATIENCE = 20
KEYS = ("recall@20", "ndcg@20")


def given_split_of(dataset: str, seed: int):
    """The benchmark's given split of ``dataset`` for ``seed``."""
    from aerec.data.datasets import load_dataset
    from aerec.data.preprocess import binarize, filter_min_counts
    from aerec.data.splits import given_split

    data = filter_min_counts(binarize(load_dataset(dataset), threshold=3.5), min_user=5)
    rng = np.random.default_rng(seed)
    test = np.zeros(data.nnz, bool)
    indptr = data.matrix.indptr
    for u in range(data.n_users):  # 20 % of each user's items, at least one
        n = indptr[u + 1] - indptr[u]
        test[indptr[u] + rng.choice(n, size=max(1, round(0.2 * n)), replace=False)] = True
    return given_split(data.mask(~test), data.mask(test), validation_fraction=0.1, seed=seed)


def run_cell(dataset: str, model_name: str, seed: int, split, params: dict | None = None,
             skip_full: bool = False) -> dict:
    from aerec.models import get_model_class
    from aerec.runs import evaluate_model, refit as refit_model
    from aerec.training import Trainer

    cls = get_model_class(model_name.split("+")[0])
    params = params or {}
    by_epochs = "epochs" in cls.Config.__dataclass_fields__
    out: dict = {}

    def scores(model) -> dict:
        metrics = evaluate_model(model, split.test, ks=(20,))
        return {k: metrics[k] for k in KEYS}

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "c.ckpt"
        started = time.perf_counter()
        trainer = Trainer(checkpoint=ckpt, patience=PATIENCE) if by_epochs else Trainer()
        early = trainer.fit(cls(seed=seed, **params) if by_epochs else cls(**params), split.train,
                            split.validation)
        out["early_seconds"] = time.perf_counter() - started
        out["no_refit"] = scores(early)
        best = getattr(early, "best_epoch_", None)
        out["best_epoch_early"] = best
        out["epochs_early"] = getattr(early, "epochs_trained_", None)
        started = time.perf_counter()
        refit = refit_model(early, split.test.fold_in, best if by_epochs else None,
                            selection_rows=split.train)
        out["refit_seconds"] = time.perf_counter() - started
        out["refit"] = scores(refit)
        if by_epochs and not skip_full:
            started = time.perf_counter()
            full = Trainer(checkpoint=ckpt, resume=True).fit(cls(seed=seed, **params), split.train,
                                                              split.validation)
            out["full_extra_seconds"] = time.perf_counter() - started
            out["full"] = scores(full)
            out["best_epoch_full"] = full.best_epoch_
            out["epochs_full"] = full.epochs_trained_
    return out


def mean_se(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "–"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) / math.sqrt(len(values)):.4f}"


def table(results: dict) -> str:
    lines = ["| data | model | seeds | Recall@20 no refit | Recall@20 refit | NDCG@20 no refit | "
             "NDCG@20 refit | NDCG@20 refit − no refit (paired) | refit better on | best epoch: "
             "early = full | epochs run, early / full | s early + refit / full run |",
             "|---|---|---:|---|---|---|---|---|---:|---:|---|---|"]
    for dataset in DATASETS:
        models = list(dict.fromkeys([*MODELS, *(k.split("/")[1] for k in results)]))
        for model in models:
            cells = [results[k] for k in sorted(results) if k.startswith(f"{dataset}/{model}/")]
            if not cells:
                continue
            col = {f"{v}_{k}": [c[v][k] for c in cells] for v in ("no_refit", "refit") for k in KEYS}
            diff = [c["refit"]["ndcg@20"] - c["no_refit"]["ndcg@20"] for c in cells]
            better = sum(d > 0 for d in diff)
            if "full" in cells[0]:
                same = sum(c["best_epoch_early"] == c["best_epoch_full"] for c in cells)
                epochs = (f"{statistics.mean(c['epochs_early'] for c in cells):.0f} / "
                          f"{statistics.mean(c['epochs_full'] for c in cells):.0f}")
                early_s = statistics.mean(c["early_seconds"] + c["refit_seconds"] for c in cells)
                full_s = statistics.mean(c["early_seconds"] + c["full_extra_seconds"] for c in cells)
                seconds = f"{early_s:.0f} / {full_s:.0f}"
                same_text = f"{same}/{len(cells)}"
            elif cells[0].get("epochs_early"):  # --no-full: early stopping and refit only
                epochs = f"{statistics.mean(c['epochs_early'] for c in cells):.0f} / –"
                same_text = "–"
                seconds = (f"{statistics.mean(c['early_seconds'] + c['refit_seconds'] for c in cells):.0f}"
                           " / –")
            else:
                epochs, same_text = "closed form", "–"
                seconds = (f"{statistics.mean(c['early_seconds'] + c['refit_seconds'] for c in cells):.1f}"
                           f" / {statistics.mean(c['early_seconds'] for c in cells):.1f}")
            lines.append(
                f"| {dataset} | {model} | {len(cells)} | {mean_se(col['no_refit_recall@20'])} | "
                f"{mean_se(col['refit_recall@20'])} | {mean_se(col['no_refit_ndcg@20'])} | "
                f"{mean_se(col['refit_ndcg@20'])} | {mean_se(diff)} | {better}/{len(cells)} | "
                f"{same_text} | {epochs} | {seconds} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results-given.json"))
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--no-full", action="store_true",
                   help="skip variant 3 (the run without early stopping)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a hyperparameter for every model of this call; the models are then "
                   "recorded as MODEL+NAME=VALUE (e.g. --set total_anneal_steps=200000)")
    args = p.parse_args()
    params = dict(item.split("=", 1) for item in args.set)
    suffix = "".join(f"+{item}" for item in args.set)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if not args.table_only:
        import torch

        torch.set_num_threads(int(os.environ.get("AEREC_BENCH_THREADS", "1")))
        for dataset in args.datasets.split(","):
            for seed in SEEDS[:args.seeds]:
                split = None
                for model in args.models.split(","):
                    model += suffix
                    key = f"{dataset}/{model}/{seed}"
                    if key in results:
                        continue
                    split = split or given_split_of(dataset, seed)
                    results[key] = run_cell(dataset, model, seed, split, params,
                                            skip_full=args.no_full)
                    args.out.write_text(json.dumps(results, indent=1))
                    print(key, results[key]["no_refit"], results[key]["refit"], flush=True)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
