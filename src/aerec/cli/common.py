"""Pieces shared by the subcommands: printing metrics, progress bars, raw-id output."""

from __future__ import annotations

import json
import sys
from typing import Any

from tqdm.auto import tqdm


def print_metrics(metrics: dict[str, Any], *, as_json: bool = False) -> None:
    """Print metrics as JSON, or as an aligned table with standard errors beside each value."""
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    for key, value in metrics.items():
        if key.endswith("_se"):
            continue
        se = metrics.get(f"{key}_se")
        if isinstance(value, float):
            text = f"{value:.4f}" + (f" ± {se:.4f}" if se is not None else "")
        else:
            text = str(value)
        print(f"{key:>24}  {text}")


class EpochProgress:
    """A tqdm bar over epochs that shows the latest loss and validation NDCG."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True) -> None:
        self.bar = tqdm(total=total, initial=initial, unit="epoch", disable=not enabled,
                        file=sys.stderr, dynamic_ncols=True)

    def __call__(self, record: dict[str, Any]) -> None:
        shown = {k: f"{v:.4g}" for k, v in record.items()
                 if k in ("loss", "val_ndcg@100", "val_rmse", "beta") and isinstance(v, float)}
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
