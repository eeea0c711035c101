"""Saving and loading without pickle: JSON for structure, safetensors for tensors.

A *state* is any nesting of dicts, lists, numbers, strings and torch tensors (a model's weights, an
optimiser's ``state_dict()``, a random generator's state). :func:`save_state` splits it into a JSON
skeleton, in which each tensor is replaced by a reference, and a flat dict of tensors; both go into
one safetensors file (the skeleton in its metadata), written atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from aerec.errors import ConfigError

_TENSOR_KEY = "__tensor__"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | Path) -> Any:
    """Read a JSON file, with an error that names the file when it is missing or broken."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None


def split_tensors(obj: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Replace every tensor inside ``obj`` by a reference; return the skeleton and the tensors."""
    tensors: dict[str, torch.Tensor] = {}
    storages: set[int] = set()

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            # A CPU tensor is not copied (it is serialised right away): a copy of every tensor at
            # every checkpoint fragmented the heap and grew the peak memory epoch after epoch.
            # Only a tensor whose storage another one shares (tied weights) is copied, since
            # safetensors refuses shared storage.
            t = node.detach().to("cpu").contiguous()
            ptr = t.untyped_storage().data_ptr()
            if ptr in storages:
                t = t.clone()
            storages.add(t.untyped_storage().data_ptr())
            tensors[path] = t
            return {_TENSOR_KEY: path}
        if isinstance(node, dict):
            return {"__dict__": [[_key(k), walk(v, f"{path}.{k}")] for k, v in node.items()]}
        if isinstance(node, (list, tuple)):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(node)]
        if isinstance(node, np.integer):
            return int(node)
        if isinstance(node, np.floating):
            return float(node)
        return node

    return walk(obj, prefix or "s"), tensors


def join_tensors(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_tensors`."""
    if isinstance(skeleton, dict):
        if _TENSOR_KEY in skeleton:
            return tensors[skeleton[_TENSOR_KEY]]
        if "__dict__" in skeleton:
            return {_unkey(k): join_tensors(v, tensors) for k, v in skeleton["__dict__"]}
        return {k: join_tensors(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [join_tensors(v, tensors) for v in skeleton]
    return skeleton


def _key(k: Any) -> Any:
    # Optimiser states are keyed by int; JSON object keys would turn them into strings.
    return {"int": k} if isinstance(k, int) else k


def _unkey(k: Any) -> Any:
    return k["int"] if isinstance(k, dict) else k


def save_state(path: str | Path, state: Any, metadata: dict[str, Any] | None = None) -> None:
    """Atomically write a nested state (tensors and JSON values) as one safetensors file."""
    skeleton, tensors = split_tensors(state)
    meta = {"skeleton": json.dumps(skeleton), "meta": json.dumps(metadata or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(path: str | Path, device: str | torch.device = "cpu") -> tuple[Any, dict[str, Any]]:
    """Read a file written by :func:`save_state`; returns ``(state, metadata)``."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a valid aerec state file ({exc})") from None
    if "skeleton" not in meta:
        raise ConfigError(f"{path}: not an aerec state file (no skeleton in its metadata)")
    skeleton = json.loads(meta["skeleton"])
    return join_tensors(skeleton, tensors), json.loads(meta.get("meta", "{}"))


def save_csr(path: str | Path, matrix: sp.csr_matrix) -> None:
    """Atomically save a CSR matrix as ``.npz`` (NumPy's format; loaded without pickle)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    os.close(fd)
    try:
        sp.save_npz(tmp, matrix.tocsr(), compressed=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_csr(path: str | Path) -> sp.csr_matrix:
    """Load a matrix saved by :func:`save_csr` (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as npz:
        fmt = npz["format"].item()
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        if fmt != "csr":
            raise ConfigError(f"{path}: expected a CSR matrix, found {fmt}")
        return sp.csr_matrix(
            (npz["data"], npz["indices"], npz["indptr"]), shape=tuple(npz["shape"])
        )
