"""Model files: ``model.json`` (class, hyperparameters, item ids and titles, versions) and
``model.safetensors`` (the learned tensors). No pickle: a model file can be loaded from an untrusted
source without running its code, and loading checks what it reads (see :func:`load_model`)."""

from __future__ import annotations

import platform
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

import aerec
from aerec.config import config_to_dict
from aerec.errors import AerecError, DataError
from aerec.persistence import check_fields, first_line, json_type, load_state, read_json, save_state, write_json

FORMAT = "aerec-model"
FORMAT_VERSION = 1


def untrained_items(item_ids: np.ndarray, item_counts: np.ndarray) -> frozenset[str]:
    """The items that no training user had (``item_counts`` 0): nothing was learned about them,
    so ``similar_items`` refuses them rather than answer from untrained weights."""
    return frozenset(np.asarray(item_ids, str)[np.asarray(item_counts) == 0].tolist())


def save_model(model: Any, path: str | Path) -> None:
    """Write ``model`` into the directory ``path`` (created if needed)."""
    model._check_fitted()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    # Tensors first: the JSON, written last, marks a complete model.
    save_state(path / "model.safetensors", model._get_state(), metadata={"model": model.name})
    ids = [str(i) for i in model.item_ids_]
    # Titles travel with the model, so that a loaded model names its items without its data.
    titles = getattr(model, "item_titles_", None) or {}
    kept = {i: str(titles[i]) for i in ids if i in titles}
    counts = getattr(model, "item_counts_", None)
    write_json(path / "model.json", {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.name,
        "params": config_to_dict(model.config),
        "n_items": int(model.n_items_),
        "item_ids": ids,
        **({"item_titles": kept} if kept else {}),
        # how many training users had each item: the popularity fallback of a served model
        **({"item_counts": [int(c) for c in counts]} if counts is not None else {}),
        "versions": {
            "aerec": aerec.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(),
        },
    })


def load_model(path: str | Path, device: str = "auto") -> Any:
    """Load a model written by :func:`save_model`, checked.

    A folder may come from someone else: every field of ``model.json`` is checked
    (:func:`read_model_json`), no tensor may hold NaN or an infinity, the weights must be of the
    model ``model.json`` names, and the loaded model is asked for the scores of an empty history,
    which must cover every item and hold no NaN. Anything wrong is one :class:`DataError` naming
    the file and what is wrong.
    """
    from aerec.device import resolve_device
    from aerec.models import get_model_class

    resolve_device(device)  # an unknown device is the caller's error, not the weights'
    path = Path(path)
    json_path = path / "model.json"
    meta = read_model_json(json_path)
    try:
        cls = get_model_class(meta["model"])
        model = cls(**meta["params"])
    except (AerecError, TypeError, ValueError) as exc:
        raise DataError(first_line(exc), path=json_path) from None
    model.item_ids_ = np.asarray(meta["item_ids"], dtype=str)
    model.n_items_ = meta["n_items"]
    if meta.get("item_titles"):
        model.item_titles_ = dict(meta["item_titles"])
    if "item_counts" in meta:  # optional: models written before they were kept do not know
        model.item_counts_ = np.asarray(meta["item_counts"], dtype=np.int64)
        model.untrained_items_ = untrained_items(model.item_ids_, model.item_counts_)
    weights = path / "model.safetensors"
    state, saved = load_state(weights)
    if saved.get("model", model.name) != model.name:
        raise DataError(f"holds the weights of a {saved['model']!r:.40} model, but "
                        f"{json_path.name} names {model.name!r}", path=weights)
    damaged = first_non_finite(state)
    if damaged is not None:
        raise DataError(f"tensor {damaged!r} holds NaN or infinite values (a diverged or "
                        "damaged model)", path=weights)
    try:
        model._set_state(state, device)
        scores = model.score_tensor(sp.csr_matrix((1, model.n_items_), dtype=np.float32))
    except (AerecError, KeyError, TypeError, ValueError, RuntimeError, AttributeError,
            IndexError) as exc:
        if isinstance(exc, DataError) and exc.path is not None:
            raise  # already names its file
        # Weights of another size or model, a missing tensor, a field of the wrong type.
        raise DataError(f"does not hold a {model.name} model of {model.n_items_} items "
                        f"({first_line(exc)})", path=weights) from None
    if tuple(scores.shape) != (1, model.n_items_):
        raise DataError(f"scores {scores.shape[-1]} items, but {json_path.name} lists "
                        f"{model.n_items_}", path=weights)
    if bool(torch.isnan(scores).any() or torch.isposinf(scores).any()):
        raise DataError("its weights give NaN or infinite scores (a diverged or damaged model)",
                        path=weights)
    return model


def read_model_json(path: str | Path) -> dict[str, Any]:
    """``model.json``, with every field the loader uses checked (``DataError`` naming it)."""
    meta = read_json(path, expect=dict)

    def bad(field: str, what: str) -> DataError:
        return DataError(what, path=path, field=field)

    if meta.get("format") != FORMAT:
        raise DataError("not an aerec model file", path=path)
    version = meta.get("format_version", 0)
    if not _is_int(version):
        raise bad("format_version", f"must be an integer, found {json_type(version)}")
    if version > FORMAT_VERSION:
        raise DataError(f"written by a newer aerec (format {version})", path=path)
    check_fields(meta, path, {"model": str, "params": dict, "item_ids": list, "n_items": int})
    n_items = meta["n_items"]
    if n_items < 1:
        raise bad("n_items", f"must be a positive integer, found {n_items!r:.40}")
    ids = meta["item_ids"]
    if not all(isinstance(i, str) for i in ids):
        raise bad("item_ids", "must be a list of strings")
    if len(ids) != n_items:
        raise bad("item_ids", f"lists {len(ids)} items, but n_items is {n_items}")
    if len(set(ids)) != len(ids):
        twice = next(i for i, n in Counter(ids).items() if n > 1)
        raise bad("item_ids", f"lists item {twice!r:.40} more than once")
    titles = meta.get("item_titles", {})  # optional: models written before titles were kept
    if not isinstance(titles, dict):
        raise bad("item_titles", f"must be an object of item id -> title, found {json_type(titles)}")
    if not all(isinstance(t, str) for t in titles.values()):
        raise bad("item_titles", "must map item ids to strings")
    unknown = set(titles).difference(ids)
    if unknown:
        raise bad("item_titles", f"names item {min(unknown)!r:.40}, which item_ids does not list")
    counts = meta.get("item_counts", [0] * n_items)  # optional: models written before
    if not isinstance(counts, list) or len(counts) != n_items:
        raise bad("item_counts", f"must be a list of {n_items} counts, one per item")
    if not all(_is_int(c) and 0 <= c <= 2**63 - 1 for c in counts):
        raise bad("item_counts", "must hold non-negative integers")
    return meta


def first_non_finite(state: Any, name: str = "") -> str | None:
    """The name of the first floating-point tensor in ``state`` holding NaN or an infinity."""
    if isinstance(state, torch.Tensor):
        # In pieces: a whole-tensor isfinite() would hold a bool copy of EASE's B (1.7 GB at
        # 41k items) beside it while loading.
        finite = not state.is_floating_point() or all(
            bool(torch.isfinite(part).all()) for part in state.reshape(-1).split(1 << 22))
        return None if finite else name or "tensor"
    items = state.items() if isinstance(state, dict) else enumerate(state) \
        if isinstance(state, list) else ()
    for key, value in items:
        found = first_non_finite(value, f"{name}.{key}" if name else str(key))
        if found is not None:
            return found
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
