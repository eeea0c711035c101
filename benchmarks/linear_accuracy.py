"""EASE (fp64, fp32), SANSA, ELSA and the ``elsarec`` package on ML-100K and ml-latest-small.

For each data set and each of five split seeds (aerec's strong-generalization split, as in
``benchmarks/peers.py``), every system is fitted on the training users and judged by aerec's
``evaluate_ranking`` on the test users' fold-in (NDCG@100, Recall@20). ``elsarec`` (the ELSA
authors' package) is never an aerec dependency: install it into a folder of its own and name it
with ``--peers-site`` (``pip install --no-deps --target /tmp/peersite elsarec==0.1.4``; it needs
only torch and scipy, which aerec's environment has). It trains at aerec's default rank and batch
size, with its own defaults otherwise (NAdam, lr 0.1, 20 epochs), and is scored ``x A A^T - x``
from its item embeddings.

Run from the repository root (one thread, under the shared lock for reported timings)::

    AEREC_DATA_DIR=/work/shared/data PYTHONPATH=src python benchmarks/linear_accuracy.py \\
        --peers-site /tmp/peersite --out benchmarks/results-linear.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SEEDS = (98765, 1, 2, 3, 4)
DATASETS = ("ml-100k", "ml-latest-small")
SYSTEMS = ("ease-fp64", "ease-fp32", "sansa", "elsa", "elsarec")


def split_of(dataset: str, seed: int):
    from aerec.models import MultVAE
    from aerec.runs import make_split

    spec = {"data": {"dataset": dataset},
            "preprocess": {"threshold": 3.5, "min_user": 5, "min_item": 0},
            "split": {"kind": "strong", "n_heldout": 0.1, "seed": seed}}
    return make_split(spec, MultVAE)


def fit_aerec(system: str, split):
    from aerec.models import ELSA, EASE, SANSA

    if system.startswith("ease"):
        return EASE(precision=system.split("-")[1]).fit(split.train)
    if system == "sansa":
        return SANSA().fit(split.train)
    return ELSA(device="cpu").fit(split.train, split.validation)


def fit_elsarec(split, rank: int, batch_size: int, seed: int):
    """The authors' package; returns a scoring function over its item embeddings."""
    from elsa import ELSA as Peer

    torch.manual_seed(seed)  # its initialisation draws from torch's global generator
    x = split.train.matrix.copy()
    x.data[:] = 1
    peer = Peer(n_items=x.shape[1], n_dims=rank, device=torch.device("cpu"))
    peer.fit(x, epochs=20, batch_size=batch_size, shuffle=True, verbose=False)
    a = F.normalize(peer.get_items_embeddings().float(), dim=-1)

    def score(batch):
        dense = torch.from_numpy((batch != 0).astype(np.float32).toarray())
        return dense @ a @ a.T - dense
    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers-site", help="folder holding the elsarec package")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results-linear.json"))
    args = parser.parse_args()
    if args.peers_site:
        sys.path.append(args.peers_site)
    torch.set_num_threads(1)
    from aerec.evaluation import evaluate_ranking
    from aerec.models import ELSA

    rows = json.loads(args.out.read_text()) if args.out.exists() else []
    done = {(r["dataset"], r["seed"], r["system"]) for r in rows}
    for dataset in args.datasets:
        for seed in args.seeds:
            split = None
            for system in args.systems:
                if (dataset, seed, system) in done:
                    continue
                split = split or split_of(dataset, seed)
                started = time.perf_counter()
                if system == "elsarec":
                    resolved = ELSA().resolved_for(split.train)
                    score = fit_elsarec(split, resolved["rank"], resolved["batch_size"], seed)
                else:
                    score = fit_aerec(system, split).score_tensor
                seconds = time.perf_counter() - started
                metrics = evaluate_ranking(score, split.test.fold_in.matrix,
                                           split.test.targets.matrix, ks=(20, 100))
                rows.append({"dataset": dataset, "seed": seed, "system": system,
                             "fit_seconds": round(seconds, 2),
                             "ndcg@100": metrics["ndcg@100"], "recall@20": metrics["recall@20"]})
                print(json.dumps(rows[-1]), flush=True)
                args.out.write_text(json.dumps(rows, indent=1))
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    """Mean (and spread) over seeds of each system on each data set, as markdown."""
    print("| data set | system | NDCG@100 (5 seeds) | Recall@20 | fit s |\n|---|---|---:|---:|---:|")
    for dataset in DATASETS:
        for system in SYSTEMS:
            sel = [r for r in rows if r["dataset"] == dataset and r["system"] == system]
            if not sel:
                continue
            nd = np.array([r["ndcg@100"] for r in sel])
            rc = np.array([r["recall@20"] for r in sel])
            fs = np.array([r["fit_seconds"] for r in sel])
            print(f"| {dataset} | {system} | {nd.mean():.4f} ± {nd.std():.4f} | {rc.mean():.4f} | "
                  f"{fs.mean():.1f} |")


if __name__ == "__main__":
    main()
