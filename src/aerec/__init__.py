"""aerec: autoencoder recommenders for collaborative filtering.

Mult-VAE and Mult-DAE (Liang et al. 2018), AutoRec (Sedhain et al. 2015), the deep autoencoder of
Kuchaiev & Ginsburg (2017), EASE and RecVAE, with the papers' evaluation protocols.

The names below are importable from the package itself (``from aerec import MultVAE``). They are
loaded on first use, so that ``import aerec`` (and ``aerec --help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ("Recommender", "MultVAE", "MultDAE", "RecVAE", "EASE", "EDLAE", "IAutoRec", "UAutoRec",
         "DeepAutoencoder", "BiasedMF", "Popularity", "Blend", "SANSA", "ELSA"),
        "aerec.models",
    ),
    "Interactions": "aerec.data.interactions",
    "RunSpec": "aerec.run_spec",
    "run": "aerec.runs",
    "load_dataset": "aerec.data.datasets",
    "strong_generalization": "aerec.data.splits",
    "given_split": "aerec.data.splits",
    "binarize": "aerec.data.preprocess",
    "filter_min_counts": "aerec.data.preprocess",
    "evaluate_ranking": "aerec.evaluation",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aerec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # for type checkers and editors, which do not run __getattr__
    from aerec.data.datasets import load_dataset
    from aerec.data.interactions import Interactions
    from aerec.data.preprocess import binarize, filter_min_counts
    from aerec.data.splits import given_split, strong_generalization
    from aerec.evaluation import evaluate_ranking
    from aerec.run_spec import RunSpec
    from aerec.runs import run
    from aerec.models import (
        EASE,
        EDLAE,
        ELSA,
        SANSA,
        BiasedMF,
        Blend,
        DeepAutoencoder,
        IAutoRec,
        MultDAE,
        MultVAE,
        Popularity,
        RecVAE,
        Recommender,
        UAutoRec,
    )
