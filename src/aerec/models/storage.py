"""Model files: ``model.json`` (class, hyperparameters, item ids, versions) and
``model.safetensors`` (the learned tensors). No pickle: a model file can be loaded from an untrusted
source without running its code."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

import aerec
from aerec.errors import ConfigError
from aerec.persistence import load_state, read_json, save_state, write_json

FORMAT = "aerec-model"
FORMAT_VERSION = 1


def save_model(model: Any, path: str | Path) -> None:
    """Write ``model`` into the directory ``path`` (created if needed)."""
    model._check_fitted()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    # Tensors first: the JSON, written last, marks a complete model.
    save_state(path / "model.safetensors", model._get_state(), metadata={"model": model.name})
    write_json(path / "model.json", {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.name,
        "params": model.get_params(),
        "n_items": int(model.n_items_),
        "item_ids": [str(i) for i in model.item_ids_],
        "versions": {
            "aerec": aerec.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(),
        },
    })


def load_model(path: str | Path, device: str = "auto") -> Any:
    """Load a model written by :func:`save_model`."""
    from aerec.models import get_model_class

    path = Path(path)
    meta = read_json(path / "model.json")
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{path / 'model.json'}: not an aerec model file")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ConfigError(
            f"{path / 'model.json'}: written by a newer aerec (format {meta['format_version']})"
        )
    cls = get_model_class(meta["model"])
    model = cls(**meta["params"])
    model.item_ids_ = np.asarray(meta["item_ids"], dtype=str)
    model.n_items_ = int(meta["n_items"])
    state, _ = load_state(path / "model.safetensors")
    model._set_state(state, device)
    return model
