"""How Mult-VAE and Mult-DAE scale with the catalogue: epoch time and peak memory by item count.

One training epoch per cell, 30,000 users of the ML-20M shape (73.2 interactions per user on
average, power-law item popularity, :mod:`aerec.data.synthetic`) at 20,000, 40,981, 100,000 and
200,000 items, fp32 and bf16 (``precision="bf16"``), the paper's layers (Mult-VAE I-600-200-600-I,
Mult-DAE I-200-I) and batch 500. Each cell runs in a fresh process (so its peak resident memory,
``getrusage``, is its own) through :func:`aerec.bench.time_epoch`, the worker of ``aerec bench
epoch``: a fit on two batches to warm up, then ``Model(epochs=1, ...).fit(matrix)`` timed, the
ratio to the floor of :mod:`aerec.bench` (the epoch's matrix-product operations at the rate of a
2048 x 2048 product, fp32 and bf16, timed in the same process before and after). Run from the
repository root (about half an hour on a quiet 2-core machine; the 200,000-item cells are half of
it)::

    .venv/bin/python benchmarks/scaling.py --json scaling.json
    .venv/bin/python benchmarks/scaling.py --items 20000,40981 --models mult-dae --precisions fp32

``--rounds N`` runs every cell N times, interleaved (all cells, then all again), and the table
keeps each cell's fastest epoch, with the ratios of all rounds beside it: on a machine shared with
other work, the fastest is the one least slowed by it. ``--json`` is rewritten after every cell, so
a long run keeps what it has, and ``--resume FILE`` counts the cells of an earlier run's JSON as
rounds already done.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ITEMS = (20_000, 40_981, 100_000, 200_000)
USERS = 30_000


def _worker(args: argparse.Namespace) -> dict:
    import torch

    from aerec.bench import BenchShape, time_epoch
    from aerec.hardware import keep_freed_memory

    keep_freed_memory()  # as `aerec train` and `aerec bench` do
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = BenchShape.named("ml-20m", users=args.users, items=args.n_items)
    started = time.perf_counter()
    out = time_epoch(shape, model=args.model, precision=args.precision)
    out["process_seconds"] = time.perf_counter() - started
    out["load_before"] = args.load_before
    out["load_after"] = os.getloadavg()[0]
    return out


def _cell(common: list[str], model: str, items: int, precision: str, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), *common, "--model", model,
           "--n-items", str(items), "--precision", precision,
           "--load-before", f"{os.getloadavg()[0]:.2f}"]
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"model": model, "items": items, "precision": precision,
                "error": f"stopped after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"model": model, "items": items, "precision": precision,
                "error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _key(r: dict) -> tuple:
    return r["model"], r["items"], r["precision"]


def _row(runs: list[dict]) -> str:
    """One table row from every round of a cell: the fastest, and all rounds' ratios."""
    done = [r for r in runs if "error" not in r]
    model, items, precision = _key(runs[0])
    if not done:
        return f"| {model} | {items:,} | {precision} | {runs[-1]['error']} | | | | | | |"
    r = min(done, key=lambda d: d["seconds_per_epoch"])
    bf16 = r.get("bf16_floor_seconds")
    bf16_ratio = f"{r['seconds_per_epoch'] / bf16:.2f}" if bf16 else "–"
    rounds = ", ".join(f"{d['ratio']:.2f}" if "error" not in d else "failed" for d in runs)
    return (f"| {model} | {items:,} | {precision} | {r['seconds_per_epoch']:.1f} | "
            f"{r['floor_seconds']:.1f} | **{r['ratio']:.2f}** | {bf16_ratio} | "
            f"{r['peak_rss_mb']:,.0f} | {r['load_before']:.1f} | {rounds} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="mult-vae,mult-dae")
    p.add_argument("--items", default=",".join(str(n) for n in ITEMS))
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--users", type=int, default=USERS)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: one per core)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per cell (default 3600)")
    p.add_argument("--rounds", type=int, default=1, help="runs of every cell, interleaved")
    p.add_argument("--resume", metavar="FILE", help="an earlier run's --json: its cells count as rounds")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", default="mult-vae", help=argparse.SUPPRESS)
    p.add_argument("--n-items", type=int, default=ITEMS[0], help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    p.add_argument("--load-before", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(_worker(args)))
        return 0
    import torch

    from aerec.hardware import cpu_bf16_flags

    print(f"## Scaling with the catalogue\n\n{platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__} ({args.threads or torch.get_num_threads()} threads), bf16 flags: "
          f"{', '.join(cpu_bf16_flags()) or 'none'}; {args.users:,} users; load average at start "
          f"{os.getloadavg()[0]:.1f}\n", flush=True)
    common = ["--worker", "--users", str(args.users), "--threads", str(args.threads)]
    cells = [(model, int(items), precision) for items in args.items.split(",")
             for model in args.models.split(",") for precision in args.precisions.split(",")]
    rows = json.loads(Path(args.resume).read_text()) if args.resume else []
    for round_ in range(args.rounds):
        for cell in cells:
            if sum(_key(r) == cell for r in rows) > round_:
                continue  # done in an earlier run (--resume)
            r = _cell(common, *cell, args.timeout)
            print(f"round {round_ + 1}: {cell}: {r.get('seconds_per_epoch', r.get('error'))}",
                  flush=True)
            rows.append(r)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=1))
    print("\n| model | items | precision | s / epoch (fastest round) | fp32 floor s | ratio to fp32 "
          "floor | ratio to bf16 floor | peak MB | load at its start | ratios of all rounds |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for cell in cells:
        runs = [r for r in rows if _key(r) == cell]
        if runs:
            print(_row(runs))
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
