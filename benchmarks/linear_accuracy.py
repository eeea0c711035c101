"""EASE (fp64, fp32), SANSA, ELSA and the ``elsarec`` package on ML-100K and ml-latest-small.

For each data set and each of five split seeds (aerec's strong-generalization split, as in
``benchmarks/peers.py``), every system is fitted on the training users and judged by aerec's
``evaluate_ranking`` on the test users' fold-in (NDCG@100, Recall@20). ``elsarec`` (the ELSA
authors' package) is never an aerec dependency: install it into a folder of its own and name it
with ``--peers-site`` (``pip install --no-deps --target /tmp/peersite elsarec==0.1.4``; it needs
only torch and scipy, which aerec's environment has). It trains at aerec's default rank and batch
size, with its own defaults otherwise (NAdam, lr 0.1, 20 epochs), and is scored ``x A A^T - x``
from its item embeddings.

The ``sansa`` package (the SANSA authors') needs scikit-sparse, hence its own venv
(``--peers-python``: numpy<2, scikit-sparse 0.4.16 built against Debian's libsuitesparse-dev,
numba, sansa 1.1.0); it runs in a subprocess of that venv (:func:`sansa_worker`, which imports no
aerec) at aerec's resolved density and ``lam``, with its exact (CHOLMOD) factoriser and its
default UMR inverter, and its scores of the test fold-in come back as a file.

Run from the repository root (one thread, under the shared lock for reported timings)::

    AEREC_DATA_DIR=/work/shared/data PYTHONPATH=src python benchmarks/linear_accuracy.py \\
        --peers-site /tmp/peersite --peers-python /tmp/peers-venv/bin/python \\
        --out benchmarks/results-linear.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np  # torch is imported where used: the sansa worker's venv has none

SEEDS = (98765, 1, 2, 3, 4)
DATASETS = ("ml-100k", "ml-latest-small")
SYSTEMS = ("ease-fp64", "ease-fp32", "sansa", "sansa-pkg", "elsa", "elsarec")


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
    import torch
    import torch.nn.functional as F
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


def fit_sansa_package(split, peers_python: str):
    """The ``sansa`` package in its venv; returns a scoring function over its saved scores."""
    import subprocess
    import tempfile

    import scipy.sparse as sp

    from aerec.models import SANSA

    density = SANSA().resolved_for(split.train)["density"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # only the users evaluate_ranking scores (those with targets), in its order
        keep = np.diff(split.test.targets.matrix.indptr) > 0
        for name, m in (("train", split.train.matrix),
                        ("fold_in", split.test.fold_in.matrix[np.flatnonzero(keep)])):
            m = sp.csr_matrix(m)
            np.savez(tmp / f"{name}.npz", data=(m.data != 0).astype(np.float32),
                     indices=m.indices, indptr=m.indptr, shape=np.array(m.shape))
        subprocess.run([peers_python, __file__, "--sansa-worker", str(tmp), str(density),
                        str(SANSA().config.lam)], check=True)
        scores = np.load(tmp / "scores.npy")
    rows = iter(range(scores.shape[0]))

    def score(batch):
        # evaluate_ranking asks for the test users with targets, in order, a batch at a time
        picked = [next(rows) for _ in range(batch.shape[0])]
        return scores[picked].copy()
    return score


def sansa_worker(folder: str, density: str, lam: str) -> None:
    """Runs in the peers venv: fit the ``sansa`` package, write the test fold-in's scores."""
    import scipy.sparse as sp
    from sansa import (CHOLMODGramianFactorizerConfig, SANSA, SANSAConfig,
                       UMRUnitLowerTriangleInverterConfig)

    def load(name):
        with np.load(Path(folder) / f"{name}.npz", allow_pickle=False) as f:
            return sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))

    config = SANSAConfig(l2=float(lam), weight_matrix_density=float(density),
                         gramian_factorizer_config=CHOLMODGramianFactorizerConfig(),
                         lower_triangle_inverter_config=UMRUnitLowerTriangleInverterConfig())
    model = SANSA(config).fit(load("train"))
    fold_in = load("fold_in")
    # x B = x - x A^-1 diag(1/diag): the package's forward gives x W1 W2 with W2's columns
    # already divided by -diag, so its scores are x + forward(x)
    scores = fold_in.toarray() + model.forward(fold_in).toarray()
    np.save(Path(folder) / "scores.npy", scores.astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers-site", help="folder holding the elsarec package")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS))
    parser.add_argument("--peers-python", help="python of the venv holding the sansa package")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results-linear.json"))
    parser.add_argument("--sansa-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sansa_worker:
        return sansa_worker(*args.sansa_worker)
    if args.peers_site:
        sys.path.append(args.peers_site)
    import torch

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
                if system == "sansa-pkg":
                    score = fit_sansa_package(split, args.peers_python)
                elif system == "elsarec":
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
