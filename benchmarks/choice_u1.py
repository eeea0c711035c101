"""Issue 27's acceptance on ML-100K u1: the lam chosen on validation against lam = 500.

Runs ``aerec train --train u1.base --test u1.test --format ml-100k --model ease --set lam=500``,
chooses lam on that run's validation carve (:func:`aerec.selection.choose_on_split` on the run's
own split, so the choice sees what the run sees), runs the same command with ``--set lam=CHOSEN``
and prints both test NDCG@20 figures (the given-split default: the refit on the whole training
rows). Until the run layer calls the choice itself, this is the command's behaviour with it.

Usage::

    AEREC_DATA_DIR=../shared/data python benchmarks/choice_u1.py [--fold u1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def train(folder: Path, fold: str, lam: float, out: Path) -> dict:
    subprocess.run([sys.executable, "-m", "aerec.cli", "train", "--train", str(folder / f"{fold}.base"),
                    "--test", str(folder / f"{fold}.test"), "--format", "ml-100k", "--model", "ease",
                    "--set", f"lam={lam!r}", "--out", str(out)], check=True, capture_output=True)
    return json.loads((out / "metrics.json").read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fold", default="u1")
    args = p.parse_args()
    from aerec.runs import load_split
    from aerec.selection import choose_on_split

    folder = Path(os.environ.get("AEREC_DATA_DIR", "data")) / "ml-100k"
    with tempfile.TemporaryDirectory() as tmp:
        base = train(folder, args.fold, 500.0, Path(tmp) / "lam500")
        choice = choose_on_split("ease", {}, load_split(Path(tmp) / "lam500" / "split"))
        chosen = train(folder, args.fold, choice.chosen["lam"], Path(tmp) / "chosen")
    print(json.dumps({"fold": args.fold, "choice": choice.to_json(),
                      "test_ndcg@20": {"lam=500": base["ndcg@20"], "chosen": chosen["ndcg@20"]},
                      "test_recall@20": {"lam=500": base["recall@20"], "chosen": chosen["recall@20"]},
                      "difference_ndcg@20": chosen["ndcg@20"] - base["ndcg@20"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
