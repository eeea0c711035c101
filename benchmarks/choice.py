"""Benchmark: hyperparameters chosen on validation, and the Mult-VAE overfitting study (issue 27).

Both parts use the given splits of ``benchmarks/given.py`` (ML-100K and ml-latest-small, ratings
of 4 and more, users with at least 5 items, per seed a random 20 % of each user's items to test,
10 % of the rest carved out as validation), seeds 98765, 1, 2, 3, 4, one torch thread.

``study``: Mult-VAE, one remedy at a time against today's default, trained with early stopping
(patience 20) on validation and evaluated on the test rows with the selected epoch (no refit, so
that every variant costs one training). Variants: ``default``; ``lam=0.01`` (the L2 penalty the
reference gives Mult-DAE); ``anneal-to-best`` (beta reaches its cap 0.2 at the default run's best
validation epoch of the same seed: ``anneal_epochs = best_epoch / 0.2``); ``beta-search`` (the
paper's search, :func:`aerec.selection.choose_hyperparameters`, then the capped training);
``dropout=0.7``; ``lr=3e-4``; ``latent=100``.

``table``: every model at its default and at the hyperparameters
:func:`aerec.selection.choose_hyperparameters` chooses on validation, in the given-split protocol
of ``aerec train`` (early stopping with patience 20, then the refit on the whole training rows),
with the wall time of the choice against one fit.

Results go to ``benchmarks/results-choice.json`` cell by cell (a rerun skips the cells it has);
the Markdown tables are printed.

Usage::

    AEREC_DATA_DIR=../shared/data python benchmarks/choice.py study --datasets ml-100k
    AEREC_DATA_DIR=../shared/data python benchmarks/choice.py table --models ease,edlae
    python benchmarks/choice.py study --table-only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/given.py: the splits

from given import DATASETS, SEEDS, given_split_of  # noqa: E402

PATIENCE = 20
KEYS = ("ndcg@20", "recall@20")
VARIANTS = {
    "default": {},
    "lam=0.01": {"lam": 0.01},
    "anneal-to-best": None,  # from the default cell of the same seed
    "beta-search": None,  # chosen on validation
    "dropout=0.7": {"dropout": 0.7},
    "lr=3e-4": {"lr": 3e-4},
    "latent=100": {"latent": 100},
}
TABLE_MODELS = ["ease", "edlae", "mult-vae", "recvae", "mult-dae"]


def test_scores(model, split) -> dict:
    from aerec.runs import evaluate_model

    metrics = evaluate_model(model, split.test, ks=(20,))
    return {k: metrics[k] for k in KEYS}


def train_selected(name: str, params: dict, split):
    """Fit with early stopping on validation (torch models) or once (closed forms)."""
    from aerec.models import get_model_class
    from aerec.training import Trainer

    cls = get_model_class(name)
    if "epochs" in cls.Config.__dataclass_fields__:
        return Trainer(patience=PATIENCE).fit(cls(**params), split.train, split.validation)
    return cls(**params).fit(split.train)


def study_cell(variant: str, seed: int, split, results: dict, dataset: str) -> dict:
    params: dict = {"seed": seed}
    out: dict = {}
    if variant == "anneal-to-best":
        best = results[f"study/{dataset}/default/{seed}"]["best_epoch"]
        params["anneal_epochs"] = best / 0.2
    elif variant == "beta-search":
        from aerec.selection import choose_hyperparameters

        choice = choose_hyperparameters("mult-vae", params, split.train, split.validation)
        params.update(choice.chosen)
        out["choice_seconds"] = choice.seconds
    else:
        params.update(VARIANTS[variant])
    started = time.perf_counter()
    model = train_selected("mult-vae", params, split)
    out.update(seconds=time.perf_counter() - started, best_epoch=model.best_epoch_,
               epochs=model.epochs_trained_, params={k: v for k, v in params.items() if k != "seed"},
               test=test_scores(model, split))
    return out


def table_cell(model_name: str, seed: int, split) -> dict:
    """Default and chosen hyperparameters in the given-split protocol (select, then refit)."""
    from aerec.selection import choose_hyperparameters

    out: dict = {}
    base = {"seed": seed} if model_name not in ("ease", "edlae") else {}
    for label, params in (("default", dict(base)), ("chosen", None)):
        started = time.perf_counter()
        selected = None
        if params is None:
            choice = choose_hyperparameters(model_name, base, split.train, split.validation)
            out["choice"] = choice.to_json()
            params = {**base, **choice.chosen}
            selected = choice.fitted  # the model at the chosen values, where the choice fitted one
        selected = selected or train_selected(model_name, params, split)
        fit_seconds = time.perf_counter() - started  # chosen: the choice and its model's fit
        refit_params = dict(params)
        if getattr(selected, "best_epoch_", None) is not None:
            refit_params["epochs"] = selected.best_epoch_
        from aerec.models import get_model_class

        refit = get_model_class(model_name)(**refit_params).fit(split.test.fold_in)
        out[label] = {"params": {k: v for k, v in params.items() if k != "seed"},
                      "fit_seconds": fit_seconds, "test": test_scores(refit, split)}
    return out


def mean_se(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "–"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) / math.sqrt(len(values)):.4f}"


def _wins(diff: list[float]) -> str:
    if len(diff) < 2:
        return "–"
    mean, se = statistics.mean(diff), statistics.stdev(diff) / math.sqrt(len(diff))
    return "win" if mean > se else ("loss" if mean < -se else "tie")


def study_table(results: dict) -> str:
    lines = ["| data | variant | seeds | NDCG@20 | Recall@20 | NDCG@20 − default (paired) | "
             "Recall@20 − default (paired) | better on | beyond 1 SE | best epoch |",
             "|---|---|---:|---|---|---|---|---:|---|---:|"]
    for dataset in DATASETS:
        base = {k.split("/")[-1]: v for k, v in results.items()
                if k.startswith(f"study/{dataset}/default/")}
        for variant in VARIANTS:
            cells = {k.split("/")[-1]: v for k, v in results.items()
                     if k.startswith(f"study/{dataset}/{variant}/")}
            if not cells:
                continue
            seeds = sorted(cells)
            col = {m: [cells[s]["test"][m] for s in seeds] for m in KEYS}
            paired = [s for s in seeds if s in base]
            diff = {m: [cells[s]["test"][m] - base[s]["test"][m] for s in paired] for m in KEYS}
            better = sum(d > 0 for d in diff["ndcg@20"])
            lines.append(
                f"| {dataset} | {variant} | {len(seeds)} | {mean_se(col['ndcg@20'])} | "
                f"{mean_se(col['recall@20'])} | "
                f"{mean_se(diff['ndcg@20']) if variant != 'default' else '–'} | "
                f"{mean_se(diff['recall@20']) if variant != 'default' else '–'} | "
                f"{f'{better}/{len(paired)}' if variant != 'default' else '–'} | "
                f"{_wins(diff['ndcg@20']) if variant != 'default' else '–'} | "
                f"{statistics.mean(c['best_epoch'] for c in cells.values()):.0f} |")
    return "\n".join(lines)


def choice_table(results: dict) -> str:
    lines = ["| data | model | seeds | chosen (median) | NDCG@20 default | NDCG@20 chosen | "
             "NDCG@20 chosen − default (paired) | Recall@20 default | Recall@20 chosen | "
             "Recall@20 chosen − default (paired) | choice s / one default fit s |",
             "|---|---|---:|---|---|---|---|---|---|---|---|"]
    for dataset in DATASETS:
        for model in TABLE_MODELS:
            cells = [v for k, v in sorted(results.items()) if k.startswith(f"table/{dataset}/{model}/")]
            if not cells:
                continue
            col = {(v, m): [c[v]["test"][m] for c in cells] for v in ("default", "chosen")
                   for m in KEYS}
            diff = {m: [c["chosen"]["test"][m] - c["default"]["test"][m] for c in cells] for m in KEYS}
            chosen = {name: statistics.median(c["choice"]["params"][name]["chosen"] for c in cells)
                      for name in cells[0]["choice"]["params"]}
            chosen_text = ", ".join(f"{k} = {v:.3g}" for k, v in chosen.items()) or "–"
            choice_s = statistics.mean(c["choice"]["seconds"] for c in cells)
            fit_s = statistics.mean(c["default"]["fit_seconds"] for c in cells)  # one default fit
            lines.append(
                f"| {dataset} | {model} | {len(cells)} | {chosen_text} | "
                f"{mean_se(col[('default', 'ndcg@20')])} | {mean_se(col[('chosen', 'ndcg@20')])} | "
                f"{mean_se(diff['ndcg@20'])} | {mean_se(col[('default', 'recall@20')])} | "
                f"{mean_se(col[('chosen', 'recall@20')])} | {mean_se(diff['recall@20'])} | "
                f"{choice_s:.1f} / {fit_s:.1f} = {choice_s / fit_s:.2f}x |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=("study", "table"))
    p.add_argument("--seeds", type=int, default=5, help="the first N of the benchmark's seeds")
    p.add_argument("--only-seeds", default=None, help="these of the benchmark's seeds (e.g. 3,4)")
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--variants", default=",".join(VARIANTS), help="study: the variants to run")
    p.add_argument("--models", default=",".join(TABLE_MODELS), help="table: the models to run")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results-choice.json"))
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if not args.table_only:
        import torch

        torch.set_num_threads(int(os.environ.get("AEREC_BENCH_THREADS", "1")))
        names = args.variants.split(",") if args.part == "study" else args.models.split(",")
        for dataset in args.datasets.split(","):
            for name in names:
                seeds = ([int(s) for s in args.only_seeds.split(",")] if args.only_seeds
                         else SEEDS[:args.seeds])
                for seed in seeds:
                    key = f"{args.part}/{dataset}/{name}/{seed}"
                    if key in results:
                        continue
                    split = given_split_of(dataset, seed)
                    if args.part == "study":
                        results[key] = study_cell(name, seed, split, results, dataset)
                    else:
                        results[key] = table_cell(name, seed, split)
                    results = {**(json.loads(args.out.read_text()) if args.out.exists() else {}),
                               key: results[key]}  # another process may write other cells
                    tmp = args.out.with_suffix(f".{os.getpid()}.tmp")
                    tmp.write_text(json.dumps(results, indent=1))
                    tmp.replace(args.out)  # atomic: a reader never sees half a file
                    print(key, json.dumps(results[key])[:300], flush=True)
    print(study_table(results) if args.part == "study" else choice_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
