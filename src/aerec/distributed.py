"""Data-parallel training with ``torch.distributed``, launched by ``torchrun``.

Every process holds the whole model and the whole training matrix. All draw the same user order
(the NumPy generator has the same seed everywhere); each takes its contiguous share of every batch
of ``batch_size`` users, computes its loss (a mean over its users), and the gradients are summed
over processes after weighting each by its share of the batch, which gives the gradient one
process would compute on the whole batch. Every process then takes the same optimiser step, so the
weights stay identical and the update counter (which drives Mult-VAE's KL annealing) is the same
everywhere. Validation users are divided among the processes and the metrics pooled, so all
processes select the same epoch. Only rank 0 writes checkpoints and the run directory.

Dropout masks and the VAE's noise differ from a one-process run (each process draws for its own
users from its own generator), so the results agree with a one-process run within the noise of
the seeds, not bit for bit. The gloo backend serves the CPU, NCCL the GPU.

See ``docs/distributed.md`` for launching on one or several machines; ``aerec train`` under
``torchrun`` (:mod:`aerec.cli.train`) uses this module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist

__all__ = [
    "active", "all_reduce_gradients", "all_reduce_sums", "barrier", "broadcast_file",
    "broadcast_bytes", "init", "is_main", "launched_by_torchrun", "local_device", "pool_means",
    "rank", "shard", "shutdown", "world_size",
]


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` with 2 or more processes in all."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and "RANK" in os.environ


def init(backend: str | None = None, device: str = "auto") -> torch.device:
    """Join the process group that ``torchrun`` describes in the environment.

    Parameters
    ----------
    backend : str, optional
        By default ``"cpu:gloo,cuda:nccl"`` where CUDA is present (NCCL for tensors on the GPU,
        gloo for the few on the host), ``"gloo"`` otherwise.
    device : str
        The training device (as the model's ``device`` setting), see :func:`local_device`.

    Returns
    -------
    torch.device
        The device this process should train on.
    """
    resolved = local_device(device)
    if not tdist.is_initialized():
        tdist.init_process_group(
            backend or ("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"))
    return resolved


def local_device(device: str = "auto") -> torch.device:
    """Resolve a device setting for this process: CUDA means this process's GPU (``LOCAL_RANK``),
    which becomes the current device, so that ``"cuda"`` in a model's settings lands there."""
    from aerec.device import resolve_device

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        if resolved.index is None:
            resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(resolved)
    return resolved


def shutdown(wait_for_others: bool = True) -> None:
    """Leave the process group (if joined), by default once every process has reached this point.

    Without the barrier a process that finishes early (every rank but 0, which alone writes the
    run directory) tears its group down while rank 0 still holds connections to it, and gloo
    aborted the process now and then ("terminate called without an active exception").
    """
    if tdist.is_available() and tdist.is_initialized():
        if wait_for_others and tdist.get_world_size() > 1:
            tdist.barrier()
        tdist.destroy_process_group()


def active() -> bool:
    """Whether a process group of 2 or more processes is initialised."""
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return tdist.get_rank() if active() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return tdist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process is the one that writes (rank 0, or the only process)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (a no-op without a process group)."""
    if active():
        tdist.barrier()


def _comm_device(device: torch.device | str) -> torch.device:
    # NCCL reduces tensors on the GPU, gloo on the CPU.
    device = torch.device(device)
    return device if device.type == "cuda" else torch.device("cpu")


def all_reduce_gradients(params: list[torch.Tensor], extra: float | torch.Tensor = 0.0) -> float:
    """Sum the gradients of ``params`` over processes, in place, in one flat buffer.

    A parameter without a gradient counts as zeros (and gets one), so that every process sends
    buffers of the same size. ``extra``, a number, travels in the same message and its sum is
    returned: the loop sends its weighted loss, so that every process sees the same total and
    stops together when it is not finite.
    """
    if not active():
        return float(extra)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    device = grads[0].device if grads else torch.device("cpu")
    tail = torch.as_tensor(extra, dtype=torch.float32).detach().reshape(1).to(device)
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [tail])
    comm = flat.to(_comm_device(device))
    tdist.all_reduce(comm)
    flat = comm.to(device)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        view = flat[offset:offset + n].view_as(p).to(p.dtype)
        if p.grad is None:
            p.grad = view.clone()
        else:
            p.grad.copy_(view)
        offset += n
    return float(flat[-1])


def all_reduce_sums(values: dict[str, Any], device: torch.device | str) -> dict[str, float]:
    """Sum each named number over processes (every process must pass the same names)."""
    names = sorted(values)
    if not names or not active():
        return {k: float(v) for k, v in values.items()}
    t = torch.tensor([float(values[k]) for k in names], dtype=torch.float64)
    t = t.to(_comm_device(device))
    tdist.all_reduce(t)
    return dict(zip(names, t.cpu().tolist()))


def pool_means(metrics: dict[str, float], device: torch.device | str) -> dict[str, float]:
    """Means over each process's users -> means over all users (weights: ``n_users``).

    ``metrics`` is what :func:`aerec.evaluation.evaluate_ranking` returns on one process's share;
    standard errors are dropped (they do not pool from means alone).
    """
    n = float(metrics.get("n_users", 0))
    names = sorted(k for k in metrics if k != "n_users" and not k.endswith("_se"))
    weighted = {k: (metrics[k] * n if n > 0 else 0.0) for k in names}
    weighted["n_users"] = n
    total = all_reduce_sums(weighted, device)
    n_all = total.pop("n_users")
    out = {k: (v / n_all if n_all > 0 else float("nan")) for k, v in total.items()}
    out["n_users"] = int(n_all)
    return out


def broadcast_file(path: str | Path | None, directory: str | Path) -> Path | None:
    """Copy a file from rank 0 to every process (a checkpoint on a disk only rank 0 sees).

    Rank 0 passes the file's path, or None when there is none; the others write it into
    ``directory`` under the same name. Returns this process's path of the file (None everywhere
    when rank 0 had none).
    """
    main = rank() == 0
    name = broadcast_bytes(Path(path).name.encode() if main and path is not None else None)
    if name is None:
        return None
    data = broadcast_bytes(Path(path).read_bytes() if main else None)
    if main:
        return Path(path)
    target = Path(directory) / name.decode()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def broadcast_bytes(data: bytes | None) -> bytes | None:
    """Rank 0's ``data`` (or None) on every process, as a uint8 tensor after its length: no
    pickling."""
    if not active():
        return data
    main = rank() == 0
    header = torch.tensor([-1 if not main or data is None else len(data)], dtype=torch.int64)
    tdist.broadcast(header, 0)
    size = int(header[0])
    if size < 0:
        return None
    payload = (torch.frombuffer(bytearray(data), dtype=torch.uint8) if main and size
               else torch.empty(size, dtype=torch.uint8))
    if size:
        tdist.broadcast(payload, 0)
    return data if main else payload.numpy().tobytes()


def shard(rows: np.ndarray, rank_: int | None = None, world_size_: int | None = None) -> np.ndarray:
    """This process's contiguous share of ``rows`` (as the training loop cuts each batch)."""
    r = rank() if rank_ is None else rank_
    w = world_size() if world_size_ is None else world_size_
    return np.array_split(rows, w)[r]
