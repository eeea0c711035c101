"""Saving and loading without pickle: JSON for structure, safetensors for tensors.

A *state* is any nesting of dicts, lists, numbers, strings and torch tensors (a model's weights, an
optimiser's ``state_dict()``, a random generator's state). :func:`save_state` splits it into a JSON
skeleton, in which each tensor is replaced by a reference, and a flat dict of tensors; both go into
one safetensors file (the skeleton in its metadata), written atomically.
"""

from __future__ import annotations

import json
import errno
import os
import re
import secrets
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from aerec.errors import DataError
from aerec.file_modes import new_file_mode

_TENSOR_KEY = "__tensor__"
#: The largest JSON file aerec reads. The biggest it writes are a split's ``ids.json`` and a
#: model's ``model.json`` (every user and item id, titles): a few MB for Netflix or ML-20M.
MAX_JSON_BYTES = 256 * 2**20
_JSON_TYPES = {dict: "a JSON object", list: "a JSON array", str: "a string", bool: "true or false",
               int: "a number", float: "a number", type(None): "null"}
_EXPECTED = {**_JSON_TYPES, int: "an integer"}


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    The file keeps the mode of the file it replaces, or gets the mode any new file gets under
    the umask (see :func:`open_temp_beside`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = open_temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def open_temp_beside(path: Path) -> tuple[int, Path]:
    """A new temporary file in ``path``'s folder, to be renamed over ``path``: its descriptor
    (open for writing) and name.

    Its mode is that of the file it will replace, or, for a new file, what the umask leaves of
    0666, as for any file a program creates. Not :func:`tempfile.mkstemp`, whose 0600 would
    survive the rename and make a shared file unreadable to the others who read it.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:  # name the file asked for, not the temporary one
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
        try:
            os.chmod(fd, stat.S_IMODE(os.stat(path).st_mode))
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return fd, tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def replacement_mode(path: Path) -> int:
    """The mode a file written over ``path`` gets: that of the file there, else what the umask
    leaves of 0666 (a shared file stays as readable as it was; a new one as any new file)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return new_file_mode()


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | Path, *, expect: type | None = None,
              max_bytes: int | None = None) -> Any:
    """Read a JSON file; every way it can be wrong is a :class:`DataError` naming the file.

    Parameters
    ----------
    path : str or Path
        The file. Only a regular file is read (``/dev/zero`` or a FIFO would never end).
    expect : type, optional
        The type the top-level value must have (``dict`` for an object, ``list`` for an array).
    max_bytes : int, optional
        Larger files are refused rather than read; default :data:`MAX_JSON_BYTES`.
    """
    path = Path(path)
    data = _read_regular(path, MAX_JSON_BYTES if max_bytes is None else max_bytes)
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise DataError(f"line {exc.lineno}: invalid JSON ({exc.msg})", path=path) from None
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text", path=path) from None
    except RecursionError:
        raise DataError("JSON nested too deeply", path=path) from None
    if expect is not None and not isinstance(value, expect):
        raise DataError(f"expected {_EXPECTED.get(expect, expect.__name__)}, found "
                        f"{json_type(value)}", path=path)
    return value


def check_fields(obj: dict[str, Any], path: str | Path, fields: dict[str, type]) -> None:
    """Check that the JSON object ``obj`` read from ``path`` has each field with its type.

    Raises
    ------
    DataError
        Naming the file and the first field that is missing or of another type.
    """
    for name, kind in fields.items():
        if name not in obj:
            raise DataError("missing", path=path, field=name)
        value = obj[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise DataError(f"must be {_EXPECTED.get(kind, kind.__name__)}, found "
                            f"{json_type(value)}", path=path, field=name)


def json_type(value: Any) -> str:
    """How JSON calls the type of ``value`` ("a JSON object", "a string", ...), for messages."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _read_regular(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, or a DataError saying why not."""
    try:
        # stat before open: opening a FIFO would wait for a writer.
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise DataError("not found", path=path) from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError("is a directory, not a file", path=path)
    if not stat.S_ISREG(info.st_mode):
        raise DataError("not a regular file", path=path)
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise DataError(f"larger than {max_bytes // 2**20} MiB; not read", path=path)
    return data


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
    """Inverse of :func:`split_tensors`; ``ValueError`` saying where a skeleton is malformed."""
    if isinstance(skeleton, dict):
        if _TENSOR_KEY in skeleton:
            ref = skeleton[_TENSOR_KEY]
            if not isinstance(ref, str) or ref not in tensors:
                raise ValueError(f"the skeleton refers to a tensor {ref!r} that the file lacks")
            return tensors[ref]
        if "__dict__" in skeleton:
            pairs = skeleton["__dict__"]
            if not isinstance(pairs, list) or not all(
                    isinstance(p, list) and len(p) == 2 for p in pairs):
                raise ValueError("a '__dict__' entry of the skeleton is not a list of pairs")
            return {_unkey(k): join_tensors(v, tensors) for k, v in pairs}
        return {k: join_tensors(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [join_tensors(v, tensors) for v in skeleton]
    return skeleton


def _key(k: Any) -> Any:
    # Optimiser states are keyed by int; JSON object keys would turn them into strings.
    return {"int": k} if isinstance(k, int) else k


def _unkey(k: Any) -> Any:
    if isinstance(k, dict) and isinstance(k.get("int"), int):
        return k["int"]
    if isinstance(k, (str, int, float, bool)) or k is None:
        return k
    raise ValueError(f"a key of the skeleton is {json_type(k)}, not a string or {{'int': N}}")


def save_state(path: str | Path, state: Any, metadata: dict[str, Any] | None = None) -> None:
    """Atomically write a nested state (tensors and JSON values) as one safetensors file."""
    skeleton, tensors = split_tensors(state)
    meta = {"skeleton": json.dumps(skeleton), "meta": json.dumps(metadata or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        try:
            save_file(tensors, tmp, metadata=meta)
        except SafetensorError as exc:
            raise _as_os_error(exc, path) from None
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, replacement_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _as_os_error(exc: Exception, path: str | Path) -> Exception:
    """safetensors reports a failed write (a full disk, a quota) as ``SafetensorError: ... (os
    error 28)``: the :class:`OSError` it stands for, naming the file, so that the caller's one-line
    handling of OS errors applies; any other error unchanged."""
    found = re.search(r"os error (\d+)", str(exc))
    if found is None:
        return exc
    code = int(found.group(1))
    return OSError(code, os.strerror(code), str(path))


def load_state(path: str | Path, device: str | torch.device = "cpu") -> tuple[Any, dict[str, Any]]:
    """Read a file written by :func:`save_state`; returns ``(state, metadata)``.

    A file that is missing, not safetensors, or whose skeleton is malformed or refers to tensors
    the file lacks is a :class:`DataError` naming it. Whether the state fits its use (shapes,
    fields) is for the caller to check.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("not found", path=path)
    if not path.is_file():
        raise DataError("not a regular file", path=path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise DataError(f"not a valid aerec state file ({first_line(exc)})", path=path) from None
    if "skeleton" not in meta:
        raise DataError("not an aerec state file (no skeleton in its metadata)", path=path)
    try:
        skeleton = json.loads(meta["skeleton"])
        extra = json.loads(meta.get("meta", "{}"))
        if not isinstance(extra, dict):
            raise ValueError(f"its 'meta' entry is {json_type(extra)}, not a JSON object")
        return join_tensors(skeleton, tensors), extra
    except (ValueError, TypeError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise DataError(f"malformed state metadata: {first_line(exc)}", path=path) from None


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type's name if it has none), for a one-line
    error that wraps it."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def save_csr(path: str | Path, matrix: sp.csr_matrix) -> None:
    """Atomically save a CSR matrix as ``.npz`` (NumPy's format; loaded without pickle)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    os.close(fd)
    try:
        sp.save_npz(tmp, matrix.tocsr(), compressed=False)
        with open(tmp, "rb") as fh:  # on disk before the rename, as the other writes
            os.fsync(fh.fileno())
        os.chmod(tmp, replacement_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_csr(path: str | Path) -> sp.csr_matrix:
    """Load a matrix saved by :func:`save_csr` (``allow_pickle=False``), checked.

    A missing file, a file that is not such an ``.npz`` (object arrays included: they would need
    pickle), non-numeric or non-finite values and inconsistent CSR arrays are each a
    :class:`DataError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("not found" if not path.exists() else "not a regular file", path=path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            fmt = npz["format"].item()
            fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
            if fmt != "csr":
                raise DataError(f"expected a CSR matrix, found {fmt!r}", path=path)
            data, indices, indptr = npz["data"], npz["indices"], npz["indptr"]
            shape = tuple(int(n) for n in npz["shape"])
    except DataError:
        raise
    except KeyError as exc:
        raise DataError(f"not a saved sparse matrix (no {exc.args[0]!r} array)", path=path) from None
    except (ValueError, TypeError, OSError, EOFError, zipfile.BadZipFile, AttributeError) as exc:
        # allow_pickle=False refuses object arrays with a ValueError: that is what it is for.
        raise DataError(f"not a saved sparse matrix ({first_line(exc)})", path=path) from None
    if data.dtype.kind not in "biuf" or indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu":
        raise DataError(f"arrays of types {data.dtype}, {indices.dtype}, {indptr.dtype} are not "
                        "numeric CSR arrays", path=path)
    if len(shape) != 2 or min(shape) < 0:
        raise DataError(f"shape {shape} is not that of a matrix", path=path)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise DataError("holds values that are NaN or infinite", path=path)
    try:
        matrix = sp.csr_matrix((data, indices, indptr), shape=shape)
        matrix.check_format(full_check=True)
    except (ValueError, TypeError, IndexError) as exc:
        raise DataError(f"inconsistent CSR arrays ({first_line(exc)})", path=path) from None
    return matrix
