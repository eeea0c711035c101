"""Batch export benchmark: the top 100 of every user at the ML-20M shape, to Parquet and CSV.

Not a test. It builds a run directory on synthetic data with ML-20M's shape (136,677 users x
20,108 items, 10M interactions, power-law popularity; strong-generalization split with 10,000
validation and 10,000 test users, as in the Mult-VAE paper) and a Mult-DAE of the paper's
architecture (20,108-200-20,108). The weights come from one epoch on a few thousand users: the time
to score does not depend on what the weights are, so training on all users would only make the
benchmark slower.

Then, one after the other, in this process unless said otherwise:

* **floor**: the batched score product plus ``torch.topk(…, 100)`` over every user, the least
  any export must do (no masking of the history, no ids, no file);
* **library**: :func:`aerec.export.export_recommendations` to Parquet and to CSV;
* **CLI**: ``aerec recommend RUN --all-users -n 100 --out FILE`` in a subprocess, end to end
  (start-up, loading the run, building the users' histories, the export), with that process's
  peak resident memory (``VmHWM`` of ``/proc/PID/status``, read every 0.1 s while it runs: the
  ``ru_maxrss`` that ``wait4`` reports starts from the parent's size at ``fork``, not from zero).

The floor is measured before and after the exports and the lower figure is used, so that load
from other processes on a shared machine inflates the ratios rather than flattering them. Each row
also gives CPU seconds (all threads of the process, from ``getrusage``), which other load on the
machine disturbs far less than wall time: their ratio is the extra *work* an export does, while
the wall-time ratio on a quiet machine can be lower, as writing overlaps with scoring.

Times are reported as a ratio to the floor measured in the same run. Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/batch_export.py [--users 136677] [--threads 1] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import aerec
from aerec.data.splits import strong_generalization
from aerec.data.synthetic import SHAPES, synthesize
from aerec.export import export_recommendations, split_users
from aerec.models import MultDAE, Recommender
from aerec.persistence import write_json
from aerec.runs import RUN_FORMAT, load_split, peak_rss_mb, save_split


def build_run(run_dir: Path, n_users: int, train_users: int, seed: int) -> None:
    """Split synthetic ML-20M-shaped data and save a Mult-DAE fitted briefly on a subset."""
    shape = SHAPES["ml-20m"]
    n_interactions = int(shape.n_interactions * n_users / shape.n_users)
    data = synthesize(n_users=n_users, n_items=shape.n_items, n_interactions=n_interactions,
                      explicit=False, seed=seed)
    n_heldout = min(10_000, n_users // 10)
    split = strong_generalization(data, n_heldout, seed=seed)
    save_split(split, run_dir / "split")
    subset = split.train.select_users(np.arange(min(train_users, split.train.n_users)))
    params = {"epochs": 1, "batch_size": 500, "device": "cpu", "seed": seed}
    MultDAE(**params).fit(subset).save(run_dir / "model")
    write_json(run_dir / "run.json", {
        "format": RUN_FORMAT, "model": "mult-dae", "params": params,
        "data": {"dataset": f"synthetic ml-20m shape ({n_users} users)"}, "preprocess": {},
        "split": {"kind": "strong", "n_heldout": n_heldout, "seed": seed},
        "versions": {"aerec": aerec.__version__},
    })


def floor_seconds(model: Recommender, matrix, n: int, batch_size: int) -> tuple[float, float]:
    """Wall and CPU seconds of the score product + top-n over every row, nothing else."""
    start, cpu = time.perf_counter(), time.process_time()
    for lo in range(0, matrix.shape[0], batch_size):
        scores = model.score_tensor(matrix[lo:lo + batch_size])
        torch.topk(scores, n, dim=1)
    return time.perf_counter() - start, time.process_time() - cpu


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli_export(run_dir: Path, out: Path, n: int, batch_size: int,
               threads: int) -> tuple[float, float, float]:
    """Wall and CPU seconds and peak RSS (MiB) of ``aerec recommend --all-users``, a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start, cpu = time.perf_counter(), children_cpu()
    proc = subprocess.Popen([sys.executable, "-m", "aerec.cli", "recommend", str(run_dir),
                             "--all-users", "-n", str(n), "--out", str(out), "--quiet",
                             "--batch-size", str(batch_size), "--device", "cpu"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_kb = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM:"))
            peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, StopIteration):  # exiting: the last reading stands
            pass
        time.sleep(0.1)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the export failed: {proc.stderr.read().decode()}")
    return wall, children_cpu() - cpu, peak_kb / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=SHAPES["ml-20m"].n_users)
    ap.add_argument("--train-users", type=int, default=3000)
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--formats", default="parquet,csv")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    formats = args.formats.split(",")

    with tempfile.TemporaryDirectory(prefix="aerec-export-") as tmp:
        run_dir = Path(tmp) / "run"
        t = time.perf_counter()
        build_run(run_dir, args.users, args.train_users, args.seed)
        print(f"built the run in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        model = Recommender.load(run_dir / "model", device="cpu")
        users = split_users(load_split(run_dir / "split"), "all")
        print(f"{users.n_users} users x {users.n_items} items, {users.nnz} history entries",
              file=sys.stderr)

        rows = []
        floors = [floor_seconds(model, users.matrix, args.n, args.batch_size)]
        for fmt in formats:
            out = Path(tmp) / f"recs.{fmt}"
            t, cpu = time.perf_counter(), time.process_time()
            summary = export_recommendations(model, users, out, args.n, batch_size=args.batch_size)
            rows.append((f"library export_recommendations, {fmt}", time.perf_counter() - t,
                         time.process_time() - cpu, None, out.stat().st_size, summary.rows))
            out.unlink()
        for fmt in formats:
            out = Path(tmp) / f"cli.{fmt}"
            wall, cpu, rss = cli_export(run_dir, out, args.n, args.batch_size, args.threads)
            rows.append((f"CLI `aerec recommend --all-users`, {fmt}, end to end", wall, cpu, rss,
                         out.stat().st_size, None))
            out.unlink()
        floors.append(floor_seconds(model, users.matrix, args.n, args.batch_size))
        floor, floor_cpu = min(f[0] for f in floors), min(f[1] for f in floors)
        rows.insert(0, (f"floor: score product + top-{args.n}, in process (wall {floors[0][0]:.0f} "
                        f"s before, {floors[1][0]:.0f} s after)", floor, floor_cpu, None, None,
                        None))

    table = [
        f"Batch export at the ML-20M shape: {users.n_users:,} users x {users.n_items:,} items, "
        f"top {args.n}, Mult-DAE {model.n_items_:,}-200-{model.n_items_:,}, batches of "
        f"{args.batch_size} users, "
        f"{args.threads} thread(s). Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
        f"torch {torch.__version__}.",
        "",
        "| what | wall s | x floor | CPU s | x floor CPU | peak RSS MiB | file MB | rows |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, seconds, cpu, rss, size, count in rows:
        table.append(f"| {name} | {seconds:.1f} | {seconds / floor:.2f} | {cpu:.1f} | "
                     f"{cpu / floor_cpu:.2f} | "
                     f"{'' if rss is None else f'{rss:,.0f}'} | "
                     f"{'' if size is None else f'{size / 1e6:,.0f}'} | "
                     f"{'' if count is None else f'{count:,}'} |")
    table.append("")
    table.append(f"Peak RSS of this benchmark process (synthetic data, split, in-process runs): "
                 f"{peak_rss_mb():,.0f} MiB.")
    text = "\n".join(table)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
