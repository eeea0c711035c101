"""Speed benchmark of aerec's Mult-VAE: how far from the hardware's floor, and what got it there.

Run from the repository root (a few minutes to half an hour, depending on the sections)::

    .venv/bin/python benchmarks/speed.py                      # everything
    .venv/bin/python benchmarks/speed.py --sections gemm,steps --users 30000
    AEREC_DATA_DIR=/path/to/data .venv/bin/python benchmarks/speed.py --sections bf16

Sections (each prints a markdown table; ``--json FILE`` keeps every figure):

``gemm``   the 2048 x 2048 product rate (fp32, bf16) and the output layer's three products in both
           weight layouts: the same products run at different rates by shape and transpose.
``steps``  the profile-driven changes, one at a time, each timed on the same slice of the ML-20M
           shape in a fresh process, from a plain PyTorch Mult-VAE (sparse first layer) to aerec's.
``epoch``  one epoch at the ML-20M shape (116,677 training users, batch 500, paper layers): fp32
           and bf16, ratio to the fp32 floor, peak memory.
``eval``   ranking all items for 10,000 held-out users, top 100.
``ease``   the EASE fit at 20,000 items (float64 Cholesky inverse).
``bf16``   NDCG@100 on ML-100K over 5 split seeds, fp32 against bf16 (needs AEREC_DATA_DIR).

Every ratio is to a floor measured in the same process (see :mod:`aerec.bench`). The machine
may be shared: rerun when the load is low, and compare ratios rather than seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

ROOT = Path(__file__).resolve().parents[1]

#: The profile steps, cumulative: each row adds one change to the one above.
STEPS = [
    ("plain", "plain PyTorch Mult-VAE, sparse first layer (before)"),
    ("l2", "+ skip the L2 penalty when lam = 0 (Mult-VAE's default)"),
    ("adam", "+ fused single-pass Adam"),
    ("output", "+ output layer, softmax and loss in one step, in place"),
    ("bag", "+ first layer as embedding_bag; radix sort of the batch's columns"),
    ("alloc", "+ reuse freed memory instead of fresh pages (mallopt)"),
    ("tiles", "+ output layer's products in tiles of 512 items (before: one product each)"),
]


# -- the "before" versions of what the steps change (the code as it was) -------------------------
def _install_before(upto: str) -> None:
    """Put back the implementations that the steps after ``upto`` replaced."""
    import torch
    import torch.nn.functional as F

    from aerec.models import fused, sparse, vae

    names = [name for name, _ in STEPS]
    done = set(names[: names.index(upto) + 1])
    if "l2" not in done:
        def l2_always(self, module):
            return (self.config.lam / self.config.batch_size) * module.weight_norm_sq()
        vae._MultAutoencoder._l2_penalty = l2_always
    if "adam" not in done:
        vae.make_adam = lambda params, lr, **kw: torch.optim.Adam(params, lr=lr, **kw)
    if "output" not in done:
        def decode_then_log_softmax(self, module, z, batch):
            logits = module.decode(z)
            log_probs = F.log_softmax(logits, dim=1)
            return -(log_probs[batch.rows, batch.col] * batch.values).sum() / batch.n_rows
        vae._MultAutoencoder._decoded_nll = decode_then_log_softmax
    if "bag" not in done:
        sparse._SparseMatmul = _CsrMatmul

        def from_csr_int64_sort(cls, matrix, device="cpu"):
            n_rows, n_cols = matrix.shape
            indptr = matrix.indptr.astype(np.int64, copy=False)
            indices = matrix.indices.astype(np.int64, copy=False)
            rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(indptr))
            perm = np.argsort(indices, kind="stable")  # int64 keys: a merge sort, not radix
            t_crow = np.zeros(n_cols + 1, np.int64)
            np.cumsum(np.bincount(indices, minlength=n_cols), out=t_crow[1:])

            def put(a):
                return torch.from_numpy(np.ascontiguousarray(a)).to(device)

            return cls(crow=put(indptr), col=put(indices), rows=put(rows),
                       values=put(matrix.data.astype(np.float32, copy=False)),
                       t_crow=put(t_crow), t_col=put(rows[perm]), t_perm=put(perm),
                       shape=(n_rows, n_cols))
        sparse.SparseBatch.from_csr = classmethod(from_csr_int64_sort)
    if "tiles" not in done:
        fused.ITEM_TILE = 1 << 40  # one tile: each product over all items at once


def _csr_matmul_class():
    import torch

    class CsrMatmul(torch.autograd.Function):
        """The first layer as it was: torch.sparse.mm on CSR tensors, both ways."""

        @staticmethod
        def forward(ctx, weight, values, batch):
            x = torch.sparse_csr_tensor(batch.crow, batch.col, values, batch.shape,
                                        check_invariants=False)
            ctx.batch = batch
            ctx.save_for_backward(values)
            return torch.sparse.mm(x, weight)

        @staticmethod
        def backward(ctx, grad_out):
            (values,) = ctx.saved_tensors
            b = ctx.batch
            xt = torch.sparse_csr_tensor(b.t_crow, b.t_col, values[b.t_perm],
                                         (b.shape[1], b.shape[0]), check_invariants=False)
            return torch.sparse.mm(xt, grad_out.contiguous()), None, None

    return CsrMatmul


_CsrMatmul = None  # set in the worker (torch is imported there)


def _worker_step(step: str, users: int) -> dict:
    global _CsrMatmul
    from aerec.bench import BenchShape, time_epoch
    from aerec.hardware import keep_freed_memory

    _CsrMatmul = _csr_matmul_class()
    _install_before(step)
    names = [name for name, _ in STEPS]
    if names.index(step) >= names.index("alloc"):
        keep_freed_memory()
    out = time_epoch(BenchShape.named("ml-20m", users=users))
    out["step"] = step
    return out


# -- sections -------------------------------------------------------------------------------------
#: Threads of the workers (0: torch's default, one per core); set by --threads.
THREADS = 0


def _subprocess(args: list[str]) -> dict:
    """Run this script's worker mode in a fresh process; its last stdout line is JSON."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *args, "--threads", str(THREADS)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def section_gemm() -> dict:
    import torch

    from aerec.bench import gemm_gflops, layout_rates
    from aerec.hardware import bf16_supported

    out = {"fp32": gemm_gflops(), "layouts_fp32": layout_rates(500, 600, 20_108)}
    if bf16_supported("cpu"):
        out["bf16"] = gemm_gflops(dtype=torch.bfloat16)
        out["layouts_bf16"] = layout_rates(500, 600, 20_108, dtype=torch.bfloat16)
    print("\n### Matrix-product rates (GFLOP/s)\n")
    print(f"2048 x 2048: fp32 {out['fp32']:.1f}" + (
        f", bf16 {out['bf16']:.1f} ({out['bf16'] / out['fp32']:.1f}x)" if "bf16" in out else
        ", bf16: not available on this CPU"))
    print("\nOutput layer (batch 500 x 600 x 20,108 items), by weight layout:\n")
    print("| precision | layout | forward h W | grad input G W^T | grad weight h^T G | "
          "3 products, ms |")
    print("|---|---|---:|---:|---:|---:|")
    for prec in ("fp32", "bf16"):
        for layout, r in out.get(f"layouts_{prec}", {}).items():
            print(f"| {prec} | {layout} | {r['forward']:.0f} | {r['grad_input']:.0f} | "
                  f"{r['grad_weight']:.0f} | {1000 * r['seconds']:.0f} |")
    return out


def section_steps(users: int, rounds: int) -> list[dict]:
    """Each step timed ``rounds`` times, the rounds interleaved (all steps, then all again), and
    the run with the lowest ratio kept: on a shared machine, the least disturbed one."""
    runs: dict[str, list[dict]] = {name: [] for name, _ in STEPS}
    for _ in range(rounds):
        for name, _label in STEPS:
            runs[name].append(_subprocess(["--worker", "step", "--step", name,
                                           "--users", str(users)]))
    print(f"\n### Profile steps ({users:,} users of the ML-20M shape, one epoch each in a fresh "
          f"process; best of {rounds} interleaved rounds)\n")
    print("| step | s / epoch | floor s | ratio | GEMM GFLOP/s | peak MB | ratios of all rounds |")
    print("|---|---:|---:|---:|---:|---:|---|")
    rows = []
    for name, label in STEPS:
        r = min(runs[name], key=lambda x: x["ratio"])
        rows.append({**r, "label": label, "all_ratios": [x["ratio"] for x in runs[name]]})
        print(f"| {label} | {r['seconds_per_epoch']:.1f} | {r['floor_seconds']:.1f} | "
              f"{r['ratio']:.2f} | {r['gemm_gflops']:.0f} | {r['peak_rss_mb']:.0f} | "
              f"{', '.join(f'{x:.2f}' for x in rows[-1]['all_ratios'])} |")
    return rows


def section_epoch(users: int | None) -> list[dict]:
    from aerec.hardware import bf16_supported

    size = ["--users", str(users or 116_677)]
    rows = [_subprocess(["--worker", "epoch", "--precision", "fp32", *size])]
    if bf16_supported("cpu"):
        rows.append(_subprocess(["--worker", "epoch", "--precision", "bf16", *size]))
    print(f"\n### One epoch at the ML-20M shape ({rows[0]['users']:,} users x "
          f"{rows[0]['items']:,} items, {rows[0]['interactions']:,} interactions)\n")
    print("| precision | s / epoch | fp32 floor s | ratio to fp32 floor | GFLOP (products) | "
          "fp32 GEMM GFLOP/s | bf16 GEMM GFLOP/s | peak MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['precision']} | {r['seconds_per_epoch']:.1f} | {r['floor_seconds']:.1f} | "
              f"{r['ratio']:.2f} | {r['flops'] / 1e9:,.0f} | {r['gemm_gflops']:.0f} | "
              f"{r.get('bf16_gemm_gflops', float('nan')):.0f} | {r['peak_rss_mb']:.0f} |")
    if len(rows) == 2:
        print(f"\nbf16 epoch / fp32 epoch: {rows[1]['seconds_per_epoch'] / rows[0]['seconds_per_epoch']:.2f}"
              f" ({rows[0]['seconds_per_epoch'] / rows[1]['seconds_per_epoch']:.2f}x faster)")
    return rows


def section_eval() -> list[dict]:
    from aerec.hardware import bf16_supported

    rows = [_subprocess(["--worker", "eval", "--precision", "fp32"])]
    if bf16_supported("cpu"):
        rows.append(_subprocess(["--worker", "eval", "--precision", "bf16"]))
    print("\n### Evaluation: 10,000 held-out users, all 20,108 items ranked, top 100\n")
    print("| precision | seconds | in the model | masking, top-k, metrics | floor s | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['precision']} | {r['seconds']:.2f} | {r['score_seconds']:.2f} | "
              f"{r['rank_seconds']:.2f} | {r['floor_seconds']:.2f} | {r['ratio']:.2f} |")
    return rows


def section_ease(items: int) -> dict:
    r = _subprocess(["--worker", "ease", "--items", str(items)])
    print(f"\n### EASE fit at {r['items']:,} items ({r['users']:,} users), float64\n")
    print("| seconds | Gram s | inverse s | floor s (fp64) | ratio | inverse alone: ratio | "
          "fp64 GEMM GFLOP/s | peak MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {r['seconds']:.1f} | {r['gram_seconds']:.1f} | {r['solve_seconds']:.1f} | "
          f"{r['floor_seconds']:.1f} | {r['ratio']:.2f} | {r['solve_ratio']:.2f} | "
          f"{r['gemm_gflops']:.0f} | {r['peak_rss_mb']:.0f} |")
    return r


def section_bf16_accuracy(seeds: int, epochs: int) -> dict | None:
    if not os.environ.get("AEREC_DATA_DIR"):
        print("\n### bf16 accuracy: skipped (set AEREC_DATA_DIR to a folder holding ml-100k/)")
        return None
    from aerec.hardware import bf16_supported

    if not bf16_supported("cpu"):
        print("\n### bf16 accuracy: skipped, this CPU has no bf16 products (avx512_bf16 / amx_bf16)")
        return None
    runs = {p: [_subprocess(["--worker", "ml100k", "--precision", p, "--seed", str(s),
                             "--epochs", str(epochs)]) for s in range(seeds)]
            for p in ("fp32", "bf16")}
    print(f"\n### bf16 against fp32: Mult-VAE on ML-100K, {seeds} split seeds, {epochs} epochs\n")
    print("| precision | NDCG@100 per seed | mean | std | Recall@20 mean |")
    print("|---|---|---:|---:|---:|")
    summary = {}
    for p, rs in runs.items():
        nd = np.array([r["ndcg@100"] for r in rs])
        rc = np.array([r["recall@20"] for r in rs])
        summary[p] = {"ndcg@100": nd.tolist(), "recall@20": rc.tolist()}
        print(f"| {p} | {', '.join(f'{v:.4f}' for v in nd)} | {nd.mean():.4f} | "
              f"{nd.std(ddof=1):.4f} | {rc.mean():.4f} |")
    diff = np.array(summary["bf16"]["ndcg@100"]) - np.array(summary["fp32"]["ndcg@100"])
    print(f"\nPaired difference bf16 - fp32 (same split and seed): mean {diff.mean():+.4f}, "
          f"std {diff.std(ddof=1):.4f}; the seeds' own std (fp32): "
          f"{np.std(summary['fp32']['ndcg@100'], ddof=1):.4f}")
    return summary


# -- workers (each run in a fresh process) ---------------------------------------------------------
def _worker(args: argparse.Namespace) -> dict:
    import torch

    from aerec.bench import BenchShape, time_ease, time_epoch, time_eval
    from aerec.hardware import keep_freed_memory

    if args.threads:
        torch.set_num_threads(args.threads)

    if args.worker == "step":
        return _worker_step(args.step, args.users)
    keep_freed_memory()
    if args.worker == "epoch":
        return time_epoch(BenchShape.named("ml-20m", users=args.users), precision=args.precision)
    if args.worker == "eval":
        return time_eval(20_108, n_users=10_000, k=100, precision=args.precision)
    if args.worker == "ease":
        return time_ease(BenchShape.named("ml-20m", items=args.items))
    if args.worker == "ml100k":
        return _ml100k(args.precision, args.seed, args.epochs)
    raise ValueError(args.worker)


def _ml100k(precision: str, seed: int, epochs: int) -> dict:
    from aerec.data.datasets import load_dataset
    from aerec.data.splits import strong_generalization
    from aerec.models import MultVAE
    from aerec.runs import evaluate_model, preprocess

    data = load_dataset("ml-100k", data_dir=os.environ["AEREC_DATA_DIR"], download=False,
                        progress=False)
    data = preprocess(data, {"threshold": 3.5, "min_user": 5}, implicit=True)
    split = strong_generalization(data, 100, seed=seed)
    started = time.perf_counter()
    model = MultVAE(epochs=epochs, device="cpu", precision=precision, seed=seed)
    model.fit(split.train, split.validation)
    metrics = evaluate_model(model, split.test)
    return {"precision": precision, "seed": seed, "ndcg@100": metrics["ndcg@100"],
            "recall@20": metrics["truncated_recall@20"], "best_epoch": model.best_epoch_,
            "seconds": time.perf_counter() - started}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sections", default="gemm,steps,epoch,eval,ease,bf16")
    p.add_argument("--users", type=int, default=30_000,
                   help="users of the ML-20M-shaped slice of the steps section (default 30000)")
    p.add_argument("--rounds", type=int, default=2,
                   help="interleaved rounds of the steps section, best kept (default 2)")
    p.add_argument("--epoch-users", type=int, default=None,
                   help="users of the epoch section (default: ML-20M's 116,677)")
    p.add_argument("--ease-items", type=int, default=20_000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=200, help="ML-100K epochs (default 200)")
    p.add_argument("--json", metavar="FILE", help="write every figure as JSON")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads in the timed processes (default: one per core); 1 gives "
                   "steadier ratios on a loaded machine, the floor being timed alike")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--step", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--items", type=int, default=20_000, help=argparse.SUPPRESS)
    args = p.parse_args()
    global THREADS
    THREADS = args.threads
    if args.worker:
        print(json.dumps(_worker(args)))
        return 0

    import torch

    from aerec.hardware import cpu_bf16_flags

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"## aerec speed benchmark\n\n{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({args.threads or torch.get_num_threads()} threads), "
          f"bf16 flags: {', '.join(cpu_bf16_flags()) or 'none'}; load average at start "
          f"{os.getloadavg()[0]:.1f}")
    results: dict = {}
    sections = args.sections.split(",")
    if "gemm" in sections:
        results["gemm"] = section_gemm()
    if "steps" in sections:
        results["steps"] = section_steps(args.users, args.rounds)
    if "epoch" in sections:
        results["epoch"] = section_epoch(args.epoch_users)
    if "eval" in sections:
        results["eval"] = section_eval()
    if "ease" in sections:
        results["ease"] = section_ease(args.ease_items)
    if "bf16" in sections:
        results["bf16"] = section_bf16_accuracy(args.seeds, args.epochs)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
