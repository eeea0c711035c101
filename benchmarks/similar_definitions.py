"""Which definition of "similar items" agrees with what held-out users do, on ML-100K.

Usage: python benchmarks/similar_definitions.py [--data-dir DIR] [--seed N]

For the three networks, two candidate definitions are compared: the cosine between the items'
vectors in the decoder's output layer, and the scores a history of the item alone gets (fold-in).
EASE's rows of ``B``, the popularity list and the cosine of the training matrix's columns
(item-kNN) are printed for reference. ML-100K is binarised at 3.5 and split by strong
generalization (94 held-out users per group); the models train at their paper's defaults.

For each item's top 10 (the item itself left out):

* precision: the share that a test user who has the item also has, averaged over every item of
  every test user (this rewards popular items: the popularity list scores high);
* lift: ``P(j | i) / P(j)`` among the validation and test users, averaged over the top 10 and over
  the items at least 5 of those users have (1 is chance);
* coverage: the share of the catalogue in at least one item's top 10.

The numbers are in ``docs/similar-and-export.md``.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import scipy.sparse as sp
import torch

from aerec.data.datasets import load_dataset
from aerec.data.preprocess import binarize
from aerec.data.splits import strong_generalization
from aerec.models import EASE, MultDAE, MultVAE, Popularity, RecVAE
from aerec.models.similarity import cosine_to

K = 10


def _binary(*parts: sp.csr_matrix) -> sp.csr_matrix:
    m = sp.vstack(parts).tocsr() if len(parts) > 1 else parts[0].tocsr().copy()
    m.data[:] = 1.0
    return m


def _held_out(heldout) -> sp.csr_matrix:
    return _binary(heldout.fold_in.matrix + heldout.targets.matrix)


def figures(sims: torch.Tensor, test: sp.csr_matrix,
            held: sp.csr_matrix) -> tuple[float, float, float]:
    """Precision, lift and coverage of each item's top K under ``sims`` (items x items)."""
    sims = sims.float().clone()
    sims.fill_diagonal_(-torch.inf)
    top = torch.topk(sims, K, dim=1).indices.numpy()
    hits = pairs = 0.0
    for u in range(test.shape[0]):
        items = test.indices[test.indptr[u]:test.indptr[u + 1]]
        have = np.zeros(test.shape[1], bool)
        have[items] = True
        hits += have[top[items]].sum() / K
        pairs += len(items)
    co = (held.T @ held).toarray().astype(np.float64)
    count = np.diag(co).copy()
    items = np.flatnonzero(count >= 5)
    lift = np.mean([(co[i, top[i]] / count[i]) / np.maximum(count[top[i]], 1) * held.shape[0]
                    for i in items])
    return hits / pairs, float(lift), len(np.unique(top)) / sims.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("AEREC_DATA_DIR"))
    parser.add_argument("--seed", type=int, default=98765)
    args = parser.parse_args()
    data = binarize(load_dataset("ml-100k", data_dir=args.data_dir, download=False,
                                 progress=False), 3.5)
    split = strong_generalization(data, 94, seed=args.seed)
    train = split.train.matrix
    n_items = train.shape[1]
    test, held = _held_out(split.test), _binary(_held_out(split.test), _held_out(split.validation))
    everything = np.arange(n_items)
    one_item_each = sp.identity(n_items, format="csr", dtype=np.float32)
    rows = [("item-kNN: cosine of the training columns",
             cosine_to(torch.from_numpy(_binary(train).T.toarray()), everything))]
    rows.append(("popularity", Popularity().fit(train).counts_.expand(n_items, -1)))
    rows.append(("ease (lam 500): rows of B", EASE(lam=500).fit(train).weights_))
    for model in (MultDAE(device="cpu"), MultVAE(device="cpu"), RecVAE(device="cpu")):
        model.fit(train, split.validation)
        rows.append((f"{model.name}: decoder cosine", model._item_similarities(everything)))
        rows.append((f"{model.name}: fold-in of the item", model.score_tensor(one_item_each)))
    print(f"ML-100K, seed {args.seed}: {test.shape[0]} test users, {held.shape[0]} held-out users")
    print(f"{'definition':44} {'precision':>9} {'lift':>6} {'coverage':>8}")
    for name, sims in rows:
        precision, lift, coverage = figures(sims, test, held)
        print(f"{name:44} {precision:9.4f} {lift:6.2f} {coverage:8.3f}")


if __name__ == "__main__":
    main()
