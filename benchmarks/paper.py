"""Benchmark: Mult-VAE and Mult-DAE at the paper's settings, strong generalization (Liang et al. 2018).

For ML-100K and ml-latest-small (ratings >= 4, users >= 5, 10% of users held out for validation and
10% for test), each model is trained with ``aerec train`` in its own process (so that peak memory
is the run's own), at the split seed 98765 and four more. Prints a Markdown table: truncated
Recall@20 / @50 and NDCG@100 with standard errors on the seed-98765 split, the mean and spread
(sample standard deviation) of NDCG@100 over the seeds, and the median over the seeds of the
seconds per epoch and of the total time (the median: a disturbed run on a shared machine moves
it less than the mean), and the largest peak memory.

Usage::

    AEREC_DATA_DIR=../shared/data python benchmarks/paper.py [--seeds 5] [--epochs 200] [--out FILE] [--raw FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SEEDS = [98765, 1, 2, 3, 4]
DATASETS = ["ml-100k", "ml-latest-small"]
MODELS = ["mult-vae", "mult-dae"]


def train(dataset: str, model: str, seed: int, epochs: int, workdir: Path) -> dict:
    out = workdir / f"{dataset}-{model}-{seed}"
    cmd = [sys.executable, "-m", "aerec.cli", "train", "--data", dataset, "--model", model,
           "--out", str(out), "--seed", str(seed), "--min-rating", "3.5", "--min-user", "5",
           "--heldout", "0.1", "--set", f"epochs={epochs}", "--quiet", "--json"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=os.environ.copy())
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--out", help="also write the table to this Markdown file")
    parser.add_argument("--raw", help="also write every run's metrics to this JSON file")
    args = parser.parse_args()
    rows = []
    raw: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in DATASETS:
            for model in MODELS:
                runs = [train(dataset, model, s, args.epochs, Path(tmp)) for s in SEEDS[:args.seeds]]
                raw[f"{dataset}/{model}"] = [dict(r, split_seed=s) for r, s in zip(runs, SEEDS)]
                first = runs[0]
                ndcgs = [r["ndcg@100"] for r in runs]
                spread = statistics.stdev(ndcgs) if len(ndcgs) > 1 else 0.0
                rows.append(
                    f"| {dataset} | {model} | {first['n_users']} "
                    f"| {first['truncated_recall@20']:.3f} ± {first['truncated_recall@20_se']:.3f} "
                    f"| {first['truncated_recall@50']:.3f} ± {first['truncated_recall@50_se']:.3f} "
                    f"| {first['ndcg@100']:.3f} ± {first['ndcg@100_se']:.3f} "
                    f"| {statistics.mean(ndcgs):.3f} ± {spread:.3f} "
                    f"| {statistics.median(r['seconds_per_epoch'] for r in runs) * 1000:.1f} "
                    f"| {statistics.median(r['total_seconds'] for r in runs):.1f} "
                    f"| {max(r['peak_rss_mb'] for r in runs):.0f} |"
                )
                print(rows[-1], flush=True)
    header = (
        f"| data | model | test users | tRecall@20 (seed 98765) | tRecall@50 | NDCG@100 "
        f"| NDCG@100 over {args.seeds} seeds (mean ± sd) | ms / epoch (median) | total s (median) "
        "| peak MB |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    table = header + "\n" + "\n".join(rows)
    print()
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    if args.raw:
        Path(args.raw).write_text(json.dumps(raw, indent=1) + "\n")


if __name__ == "__main__":
    main()
