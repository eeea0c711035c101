"""Pieces shared by the subcommands: model names, printing metrics, progress bars.

Nothing heavy is imported here: the subcommands' ``register`` functions use this module, and
``aerec --help`` must not wait for torch.
"""

from __future__ import annotations

import json
from typing import Any

#: Names of the registered models, for ``--model`` choices without importing the models (and
#: torch); ``tests/test_bad_input_cli.py`` checks that it equals ``aerec.models.REGISTRY``.
MODEL_NAMES = ("biased-mf", "blend", "deep-ae", "ease", "edlae", "elsa", "i-autorec", "mult-dae",
               "mult-vae", "popularity", "recvae", "sansa", "u-autorec")


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
