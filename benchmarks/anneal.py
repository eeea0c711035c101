"""Benchmark: Mult-VAE's KL annealing on small data — the notebook's constant, ``auto``, the beta search.

Strong generalization on ML-100K and ml-latest-small as in ``benchmarks/paper.py`` (ratings >= 4,
users >= 5, 10 % of the users held out for validation and 10 % for test, 200 epochs), split seeds
98765, 1, 2, 3, 4. Three Mult-VAE variants beside Mult-DAE:

* ``notebook``: ``total_anneal_steps=200000``, the reference notebook's constant (beta stays
  below 0.002 on ML-100K); these runs, and Mult-DAE's, are read from
  ``benchmarks/results-paper.json`` (the same code paths gave the same digits after the Trainer
  redesign; see the closing note of that change);
* ``auto``: the default ``total_anneal_steps="auto"`` (beta reaches 0.2 at 85.5 % of training);
* ``beta search``: the paper's search (anneal to 1 over the run, take the beta of the best
  validation NDCG@100, train again capped at it): ``aerec train --beta-search``.

Each run is its own ``aerec train`` process with one torch thread; results are written cell by
cell to ``benchmarks/results-anneal.json`` (a rerun skips finished cells). Prints NDCG@100 and
Recall@20 (mean ± standard error over seeds), the paired difference against Mult-DAE, the beta
reached and the best epoch.

Usage::

    AEREC_DATA_DIR=../shared/data python benchmarks/anneal.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SEEDS = [98765, 1, 2, 3, 4]
DATASETS = ["ml-100k", "ml-latest-small"]
VARIANTS = {"auto": [], "beta-search": ["--beta-search"]}
PAPER = Path(__file__).with_name("results-paper.json")


def train(dataset: str, seed: int, extra: list[str], workdir: Path) -> dict:
    out = workdir / "run"
    cmd = [sys.executable, "-m", "aerec.cli", "train", "--data", dataset, "--model", "mult-vae",
           "--out", str(out), "--seed", str(seed), "--min-rating", "3.5", "--min-user", "5",
           "--heldout", "0.1", "--quiet", "--json", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "history.json").read_text())
    spec = json.loads((out / "run.json").read_text())
    best = metrics["best_epoch"]
    metrics["beta_at_best"] = next(h["beta"] for h in history if h["epoch"] == best)
    metrics["beta_final"] = history[-1]["beta"]
    metrics["anneal_cap"] = spec["params"]["anneal_cap"]
    return metrics


def mean_se(values: list[float]) -> str:
    return (f"{statistics.mean(values):.4f} ± {statistics.stdev(values) / math.sqrt(len(values)):.4f}"
            if len(values) > 1 else f"{values[0]:.4f}")


def table(results: dict, paper: dict) -> str:
    lines = ["| data | model | seeds | NDCG@100 | Recall@20 | NDCG@100 − Mult-DAE (paired) | "
             "above Mult-DAE | NDCG@100 − notebook (paired) | beta at the best epoch | best epoch |",
             "|---|---|---:|---|---|---|---:|---|---|---:|"]
    for dataset in DATASETS:
        dae = paper.get(f"{dataset}/mult-dae", [])
        notebook = paper.get(f"{dataset}/mult-vae", [])
        rows = [("Mult-DAE", dae), ("Mult-VAE, notebook constant", paper.get(f"{dataset}/mult-vae", []))]
        rows += [(f"Mult-VAE, {v}", [results[k] for k in sorted(results, key=_seed_order)
                                      if k.startswith(f"{dataset}/{v}/")]) for v in VARIANTS]
        for name, runs in rows:
            if not runs:
                continue
            n = len(runs)
            nd = [r["ndcg@100"] for r in runs]
            diff = [a - b["ndcg@100"] for a, b in zip(nd, dae[:n])]
            beta = (mean_se([r["beta_at_best"] for r in runs]) if "beta_at_best" in runs[0] else "–")
            gain = ([a - b["ndcg@100"] for a, b in zip(nd, notebook[:n])]
                    if name.startswith("Mult-VAE, ") and "notebook" not in name else [])
            lines.append(
                f"| {dataset} | {name} | {n} | {mean_se(nd)} | "
                f"{mean_se([r['recall@20'] for r in runs])} | "
                f"{mean_se(diff) if name != 'Mult-DAE' else '–'} | "
                f"{sum(d > 0 for d in diff) if name != 'Mult-DAE' else '–'}/{n} | "
                f"{mean_se(gain) if gain else '–'} | {beta} | "
                f"{statistics.mean(r['best_epoch'] for r in runs):.0f} |")
    return "\n".join(lines)


def _seed_order(key: str) -> int:
    return SEEDS.index(int(key.rsplit("/", 1)[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results-anneal.json"))
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    paper = json.loads(PAPER.read_text())
    if not args.table_only:
        for dataset in args.datasets.split(","):
            for seed in SEEDS[:args.seeds]:
                for variant in args.variants.split(","):
                    key = f"{dataset}/{variant}/{seed}"
                    if key in results:
                        continue
                    with tempfile.TemporaryDirectory() as tmp:
                        results[key] = train(dataset, seed, VARIANTS[variant], Path(tmp))
                    args.out.write_text(json.dumps(results, indent=1))
                    print(key, results[key]["ndcg@100"], results[key]["beta_at_best"], flush=True)
    print(table(results, paper))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
