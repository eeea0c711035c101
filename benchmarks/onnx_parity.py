"""ONNX export parity on ML-100K: onnxruntime's scores against torch's, for 100 held-out users.

Usage: python benchmarks/onnx_parity.py [--data-dir DIR] [--epochs N]

Each exportable model is trained at its paper's architecture on the strong-generalization split
of ML-100K (binarised at 3.5; few epochs: agreement does not depend on how well it is trained),
exported with :func:`aerec.onnx_export.export_onnx`, and both runtimes score the fold-in
histories of the first 100 test users. Printed per model: the largest absolute difference over
the largest absolute torch score (the issue's "1e-5 relative"), the largest elementwise relative
difference among scores at least 1 % of that scale, the file size, and the export time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from aerec.data.datasets import load_dataset
from aerec.data.preprocess import binarize
from aerec.data.splits import strong_generalization
from aerec.models import MultDAE, MultVAE, RecVAE
from aerec.onnx_export import export_onnx, onnx_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("AEREC_DATA_DIR"))
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    data = binarize(load_dataset("ml-100k", data_dir=args.data_dir, download=False,
                                 progress=False), 3.5)
    split = strong_generalization(data, 100, seed=98765)
    users = split.test.fold_in.matrix[:100]
    print(f"ML-100K: {split.train.n_users} training users x {split.train.n_items} items; "
          f"{users.shape[0]} test users scored")
    print(f"{'model':10} {'max|d|/max|s|':>14} {'max rel (|s|>=1%)':>18} {'MiB':>6} "
          f"{'export s':>9}")
    models = [MultVAE(epochs=args.epochs, device="cpu"), MultDAE(epochs=args.epochs, device="cpu"),
              RecVAE(epochs=max(1, args.epochs // 4), device="cpu")]
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            model.fit(split.train, split.validation)
            path = Path(tmp) / f"{model.name}.onnx"
            start = time.perf_counter()
            export_onnx(model, path)
            seconds = time.perf_counter() - start
            got, want = onnx_scores(path, users.toarray()), model.score(users)
            scale = np.abs(want).max()
            big = np.abs(want) >= 0.01 * scale
            elementwise = (np.abs(got - want)[big] / np.abs(want)[big]).max()
            print(f"{model.name:10} {np.abs(got - want).max() / scale:14.2e} {elementwise:18.2e} "
                  f"{path.stat().st_size / 2**20:6.1f} {seconds:9.1f}")


if __name__ == "__main__":
    main()
