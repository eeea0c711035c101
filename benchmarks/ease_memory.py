"""EASE and EDLAE at 40,981 items: peak memory and the time of each stage against the fp64 floor.

The shape is the issue's public benchmark (issue 17): 29,858 training users x 40,981 items,
810,128 training interactions, power-law item popularity (:mod:`aerec.data.synthetic`, its
default shifted Zipf law). Each fit runs in a fresh process, so its peak resident memory
(``getrusage``) is its own. Run from the repository root (about 25 minutes a fit on a quiet
2-core machine; check ``free -g`` first, a 40,981-item fit needs about 14 GB)::

    .venv/bin/python benchmarks/ease_memory.py                        # EASE and EDLAE, 40,981 items
    .venv/bin/python benchmarks/ease_memory.py --models ease --items 12000 --compare-old
    .venv/bin/python benchmarks/ease_memory.py --json results.json

Each fit goes through the model's API (``EASE().fit(train)``, as ``aerec train`` does, with
:func:`aerec.hardware.keep_freed_memory`); the stages are timed by wrapping
:mod:`aerec.models.ease`'s functions. The model then ranks all items for 1,000 held-out users
(more users of the same generator: same seed, so the same item popularity and groups; 80 % of each
user's items shown, 20 % to find).

The floor of a stage is its floating-point operations at the rate of a 2048 x 2048 float64 product
of PyTorch's BLAS (MKL, which the solve's LAPACK uses), the larger of two timings, one before and
one after the fit: ``potrf`` ``n^3 / 3``, ``potri`` ``2 n^3 / 3`` (``dtrtri`` and ``dlauum``,
``n^3 / 3`` each). The Gram matrix, a sparse product, gets its ``2 sum_u n_u^2`` operations for
reference (of which the code computes the lower triangle, about half).

``--compare-old`` also fits the code before issue 17 (git commit ``cb0bd45``: torch's Cholesky
calls in a temporary, a separate float32 ``B``) at the same size, for its peak memory; at 40,981
items it does not fit on a 24 GB machine, so use a smaller ``--items``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USERS, ITEMS, INTERACTIONS = 29_858, 40_981, 810_128
HELD_OUT_USERS = 1_000
OLD_COMMIT = "cb0bd45"  # the last commit with the three-matrix EASE


def _status() -> dict[str, float]:
    """VmHWM (peak) and VmRSS of this process, in MiB."""
    out = {}
    for line in open("/proc/self/status"):
        if line.startswith(("VmHWM:", "VmRSS:")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def _data(users: int, items: int, interactions: int, seed: int):
    """Training matrix of exactly the given shape, and held-out users from the same generator."""
    from aerec.bench import random_holdout
    from aerec.data.synthetic import synthesize

    train = synthesize(n_users=users, n_items=items, n_interactions=interactions, seed=seed).matrix
    per_user = interactions / users
    held = synthesize(n_users=HELD_OUT_USERS, n_items=items,
                      n_interactions=round(HELD_OUT_USERS * per_user), seed=seed).matrix
    fold_in, targets = random_holdout(held, 0.2, seed)
    return train, fold_in, targets


def _worker(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from aerec.bench import fp64_gemm_gflops
    from aerec.evaluation import evaluate_ranking
    from aerec.hardware import keep_freed_memory
    from aerec.models import get_model_class

    load_start = os.getloadavg()[0]
    keep_freed_memory()  # as `aerec train` does
    if args.threads:
        torch.set_num_threads(args.threads)
    train, fold_in, targets = _data(args.users, args.items, args.interactions, args.seed)
    data_mb = _status()["VmRSS"]
    if args.code == "old":
        module = _old_module()
        stages = {"gram": "gram_matrix", "solve": "ease_weights"}
    else:
        from aerec.models import ease as module
        stages = {"gram": "gram_matrix", "potrf": "factorise", "potri": "invert",
                  "B": "weights_from_inverse"}
    seconds: dict[str, float] = {}
    peaks: dict[str, float] = {}
    for stage, name in stages.items():
        _time_calls(module, name, stage, seconds, peaks)
    rate_before = fp64_gemm_gflops()
    cls = get_model_class(args.model)
    if args.code == "old":  # the old model class, with its own module's functions
        cls = {"ease": module.EASE}.get(args.model) or _old_edlae(module)
    started = time.perf_counter()
    model = cls().fit(train)
    fit_seconds = time.perf_counter() - started
    peak_fit = _status()["VmHWM"]
    load_after_fit = os.getloadavg()[0]
    started = time.perf_counter()
    metrics = evaluate_ranking(model.score_tensor, fold_in, targets, ks=(20, 100))
    eval_seconds = time.perf_counter() - started
    rate = max(rate_before, fp64_gemm_gflops())
    n = args.items
    counts = np.diff(train.indptr).astype(np.float64)
    flops = {"gram": 2.0 * float((counts ** 2).sum()), "potrf": n ** 3 / 3, "potri": 2 * n ** 3 / 3,
             "solve": float(n) ** 3}
    floors = {k: flops[k] / (rate * 1e9) for k in seconds if k in ("potrf", "potri", "solve")}
    return {
        "model": args.model, "code": args.code, "users": args.users, "items": n,
        "interactions": int(train.nnz), "threads": torch.get_num_threads(),
        "seconds": seconds, "fit_seconds": fit_seconds, "eval_seconds": eval_seconds,
        "flops": flops, "fp64_gemm_gflops": rate, "floor_seconds": floors,
        "ratio": {k: seconds[k] / floors[k] for k in floors},
        "peak_mb_after_stage": peaks, "peak_mb_fit": peak_fit, "data_mb": data_mb,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "matrix_mb": n * n * 8 / 2**20, "weights_mb": model.weights_.numel() * 4 / 2**20,
        "ndcg@100": metrics["ndcg@100"], "recall@20": metrics["truncated_recall@20"],
        "load_before": load_start, "load_after_fit": load_after_fit,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
    }


def _time_calls(module, name: str, stage: str, seconds: dict, peaks: dict) -> None:
    """Wrap ``module.name`` so that each call adds its time to ``seconds[stage]``."""
    inner = getattr(module, name)

    def timed(*a, **kw):
        started = time.perf_counter()
        out = inner(*a, **kw)
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - started
        peaks[stage] = _status()["VmHWM"]
        return out

    setattr(module, name, timed)


def _old_module():
    """The EASE module as it was before issue 17, loaded from git under another name."""
    source = subprocess.run(["git", "show", f"{OLD_COMMIT}:src/aerec/models/ease.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "ease_before_issue_17.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("ease_before_issue_17", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _old_edlae(module):
    from aerec.models.edlae import EDLAE

    return type("OldEDLAE", (module.EASE,), {"Config": EDLAE.Config, "_penalty": EDLAE._penalty})


#: OMP_WAIT_POLICY of the workers (None: the environment's); set by --omp-wait.
OMP_WAIT = None


def _subprocess(args: list[str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    env = dict(os.environ, **({"OMP_WAIT_POLICY": OMP_WAIT} if OMP_WAIT else {}))
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _meminfo(field: str) -> int:
    for line in open("/proc/meminfo"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def fitting_table(nnz: int) -> list[dict]:
    """The largest item count that fits, before (three float64 matrices) and now."""
    from aerec.models.ease import largest_fitting

    rows = []
    for label, available in (("MemTotal of this machine", _meminfo("MemTotal")),
                             ("24 GB (24e9 bytes)", 24 * 10**9),
                             ("21.3 GiB available (the issue's refusal)", int(21.3 * 2**30))):
        before = math.isqrt(available // (8 * 3))
        rows.append({"memory": label, "bytes": available, "before": before,
                     "now": largest_fitting(available, nnz),
                     "now_float32_solve": largest_fitting(available, nnz, dtype="float32")})
    return rows


def _print(r: dict) -> None:
    s, f, ratio = r["seconds"], r["floor_seconds"], r["ratio"]
    print(f"\n### {r['model']} ({r['code']} code), {r['items']:,} items, {r['users']:,} users, "
          f"{r['interactions']:,} interactions, {r['threads']} threads, OMP_WAIT_POLICY "
          f"{r['omp_wait_policy'] or 'unset'}, load {r['load_before']:.1f} at the start and "
          f"{r['load_after_fit']:.1f} after the fit\n")
    print("| stage | seconds | floor s | ratio | peak MB after it |")
    print("|---|---:|---:|---:|---:|")
    for stage in s:
        floor = f"{f[stage]:.1f}" if stage in f else "–"
        rat = f"{ratio[stage]:.2f}" if stage in ratio else "–"
        print(f"| {stage} | {s[stage]:.1f} | {floor} | {rat} | {r['peak_mb_after_stage'][stage]:,.0f} |")
    print(f"\nfit {r['fit_seconds']:.1f} s, evaluation of {HELD_OUT_USERS:,} users "
          f"{r['eval_seconds']:.1f} s (NDCG@100 {r['ndcg@100']:.4f}); fp64 GEMM "
          f"{r['fp64_gemm_gflops']:.0f} GFLOP/s; peak RSS {r['peak_rss_mb']:,.0f} MB (data "
          f"{r['data_mb']:,.0f} MB, one float64 matrix {r['matrix_mb']:,.0f} MB, B "
          f"{r['weights_mb']:,.0f} MB)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="ease,edlae")
    p.add_argument("--users", type=int, default=USERS)
    p.add_argument("--items", type=int, default=ITEMS)
    p.add_argument("--interactions", type=int, default=INTERACTIONS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: one per core)")
    p.add_argument("--compare-old", action="store_true",
                   help=f"also fit the code of {OLD_COMMIT} (three matrices) at the same size")
    p.add_argument("--omp-wait", choices=["active", "passive"],
                   help="OMP_WAIT_POLICY of the fits: on a machine shared with other work, "
                   "'passive' keeps LAPACK's threads from spinning (potri ran 5x faster so at "
                   "load 9 on 2 cores); default: the environment's")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", default="ease", help=argparse.SUPPRESS)
    p.add_argument("--code", default="new", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(_worker(args)))
        return 0
    import torch

    global OMP_WAIT
    OMP_WAIT = args.omp_wait
    print(f"## EASE memory benchmark\n\n{platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, MemTotal {_meminfo('MemTotal') / 2**30:.1f} GiB, "
          f"MemAvailable {_meminfo('MemAvailable') / 2**30:.1f} GiB, load average "
          f"{os.getloadavg()[0]:.1f}")
    results: dict = {"fits": fitting_table(args.interactions), "runs": []}
    print("\n| memory | largest item count before (3 float64 matrices) | now (one, + workspace) "
          "| float32 solve |\n|---|---:|---:|---:|")
    for row in results["fits"]:
        print(f"| {row['memory']} | {row['before']:,} | {row['now']:,} | {row['now_float32_solve']:,} |")
    common = ["--worker", "--users", str(args.users), "--items", str(args.items),
              "--interactions", str(args.interactions), "--seed", str(args.seed),
              "--threads", str(args.threads)]
    codes = ["new", "old"] if args.compare_old else ["new"]
    for model in args.models.split(","):
        for code in codes:
            r = _subprocess([*common, "--model", model, "--code", code])
            _print(r)
            results["runs"].append(r)
            if args.json:  # after each run: a long benchmark keeps what it has
                Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
