"""Latency of one user's recommendations from an item-output model at a large catalogue.

The service scores a request with ``recommend_filtered`` (aerec.serving.app), which for Mult-VAE,
Mult-DAE and RecVAE ranks over item tiles (aerec.models.tiled_topk). This times that call for
single users (a history of ``--history`` random items, the top ``--n``), after ``--warmup`` calls,
and prints the percentiles and the peak memory as one JSON object. The network is initialised,
not trained (``epochs=0``): the work of a request is the same. Also timed: one batch of
``--batch`` users (the export's unit), to show its memory stays at one tile.

    python benchmarks/scale_scoring.py --items 1000000 --requests 200
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import scipy.sparse as sp
import torch

from aerec.bench import peak_rss_mb
from aerec.models import get_model_class


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--model", default="mult-vae")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--history", type=int, default=50)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--batch", type=int, default=1000)
    args = p.parse_args()
    rng = np.random.default_rng(0)

    def histories(n_users: int) -> sp.csr_matrix:
        cols = np.sort(rng.choice(args.items, size=(n_users, args.history)), axis=1).ravel()
        rows = np.repeat(np.arange(n_users), args.history)
        m = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)),
                          shape=(n_users, args.items))
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    model = get_model_class(args.model)(epochs=0, device="cpu").fit(histories(2))
    times = []
    for i in range(args.warmup + args.requests):
        user = histories(1)
        started = time.perf_counter()
        model.recommend_filtered(user, args.n)
        if i >= args.warmup:
            times.append(time.perf_counter() - started)
    rss_single = peak_rss_mb()
    batch = histories(args.batch)
    started = time.perf_counter()
    model.recommend_filtered(batch, args.n)
    batch_seconds = time.perf_counter() - started
    ms = np.array(times) * 1000
    print(json.dumps({
        "model": args.model, "items": args.items, "n": args.n, "history": args.history,
        "threads": torch.get_num_threads(), "requests": args.requests,
        "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
        "weight_bytes": int(sum(p.numel() * p.element_size() for p in model.module_.parameters())),
        "peak_rss_mb_single": rss_single, "batch_users": args.batch,
        "batch_seconds": batch_seconds, "peak_rss_mb": peak_rss_mb(),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
