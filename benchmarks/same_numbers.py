"""Every model's test metrics on ML-100K at the README settings, for before/after comparisons.

A redesign that must change no number is checked by running this script on the old and the new
code and comparing the two JSON files (``--compare OLD NEW``): every metric must be identical to
the last digit. Each model trains in its own ``aerec train`` process with one torch thread, so the
figures do not depend on the machine's core count.

    python benchmarks/same_numbers.py --out before.json          # on the old code
    python benchmarks/same_numbers.py --out after.json           # on the new code
    python benchmarks/same_numbers.py --compare before.json after.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: model -> extra ``aerec train`` arguments (implicit models: the paper's strong generalization;
#: rating models: the canonical u1 fold).
RUNS: dict[str, list[str]] = {
    # the notebook's anneal length, pinned: the default became "auto" later (on purpose)
    "mult-vae": ["--set", "total_anneal_steps=200000"], "mult-dae": [], "recvae": [], "ease": [], "edlae": [], "popularity": [],
    "blend": [],
    "i-autorec": ["--split", "u1"], "u-autorec": ["--split", "u1"],
    "deep-ae": ["--split", "u1"], "biased-mf": ["--split", "u1"],
}
#: Keys of metrics.json that are timings or memory, not results.
NOT_RESULTS = {"seconds_per_epoch", "total_seconds", "peak_rss_mb"}


def run_all(out: Path, models: list[str]) -> dict:
    results = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for model in models:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "aerec.cli", "train", "--data", "ml-100k", "--model", model,
                   *RUNS[model], "--seed", "98765", "--out", f"{tmp}/run", "--quiet", "--json"]
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
            metrics = json.loads(Path(tmp, "run", "metrics.json").read_text())
        results[model] = {k: v for k, v in metrics.items() if k not in NOT_RESULTS}
        print(model, {k: v for k, v in results[model].items() if k.startswith(("ndcg@100", "rmse"))},
              flush=True)
    out.write_text(json.dumps(results, indent=1, sort_keys=True))
    return results


def compare(old: Path, new: Path) -> int:
    a, b = json.loads(old.read_text()), json.loads(new.read_text())
    differ = 0
    print("| model | key figure | before | after | identical keys |")
    print("|---|---|---|---|---|")
    for model in sorted(set(a) | set(b)):
        ma, mb = a.get(model, {}), b.get(model, {})
        same = [k for k in ma if k in mb and ma[k] == mb[k]]
        key = "ndcg@100" if "ndcg@100" in ma else "rmse"
        ok = len(same) == len(ma) == len(mb)
        differ += not ok
        print(f"| {model} | {key} | {ma.get(key)!r} | {mb.get(key)!r} | "
              f"{len(same)}/{max(len(ma), len(mb))}{'' if ok else ' DIFFER'} |")
    return 1 if differ else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path)
    p.add_argument("--models", default=",".join(RUNS))
    p.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"))
    args = p.parse_args()
    if args.compare:
        return compare(*args.compare)
    run_all(args.out, args.models.split(","))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
