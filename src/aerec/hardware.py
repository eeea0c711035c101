"""What the hardware offers, and how a training process uses it: bf16 products, the allocator.

**Precision.** Some CPUs multiply bf16 matrices several times faster than fp32 (AVX512_BF16, AMX); recent GPUs do
too. ``precision="bf16"`` runs a model's forward pass under ``torch.autocast``, which gives the
matrix products bf16 operands (accumulating in fp32) and keeps softmax, log-sum-exp and the losses
in fp32; parameters and the optimiser stay fp32. Where the hardware lacks bf16, the model falls
back to fp32 with one warning.

**Allocator.** A Mult-VAE batch at the ML-20M shape allocates several 40-50 MB tensors (logits,
gradients). glibc serves blocks that large with ``mmap`` and returns them on ``free``, so each
batch page-faults ~100 MB of fresh zeroed memory, which costs as much as an element-wise pass or
two over it. :func:`keep_freed_memory` tells glibc to serve them from the heap and keep what is
freed, so the same memory is reused batch after batch. It changes the whole process (its memory
never shrinks below its peak), so the library never calls it on its own: the ``aerec train`` and
``aerec bench`` commands, which own their process, do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch

__all__ = ["autocast", "bf16_supported", "cpu_bf16_flags", "keep_freed_memory",
           "release_freed_memory"]

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The CPU flags of ``/proc/cpuinfo`` that give fast bf16 products (empty when none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    return parse_bf16_flags(text)


def parse_bf16_flags(cpuinfo: str) -> tuple[str, ...]:
    """The bf16 flags (``avx512_bf16``, ``amx_bf16``) on the first ``flags`` line of a
    ``/proc/cpuinfo`` text; without such a line, what torch reports."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return tuple(f for f in _BF16_FLAGS if f in flags)
    # No /proc (macOS, Windows): ask torch, which knows AVX512_BF16.
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return ("avx512_bf16",) if probe is not None and probe() else ()


def bf16_supported(device: torch.device | str) -> bool:
    """Whether ``device`` has fast bf16 matrix products."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_bf16_flags())
    return False


@functools.lru_cache(maxsize=None)
def _warn_fallback(device_type: str) -> None:
    warnings.warn(
        f"precision='bf16' asked for, but this {device_type.upper()} has no fast bf16 matrix "
        "products (the CPU flags avx512_bf16 or amx_bf16, or a GPU of compute capability 8.0+); "
        "computing in fp32",
        RuntimeWarning, stacklevel=3,
    )


def autocast(device: torch.device | str, precision: str = "fp32"):
    """A context that computes in ``precision`` on ``device``: bf16 autocast, or nothing.

    Parameters
    ----------
    device : torch.device or str
    precision : {"fp32", "bf16"}

    Returns
    -------
    context manager
        ``torch.autocast(device_type, dtype=torch.bfloat16)`` for bf16 on hardware that has it;
        a no-op for fp32, and (after one warning) where bf16 is missing.
    """
    if precision == "fp32":
        return nullcontext()
    if precision != "bf16":
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    device = torch.device(device)
    if not bf16_supported(device):
        _warn_fallback(device.type)
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


# mallopt parameters of glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Make glibc reuse freed large blocks instead of unmapping them (see the module docstring).

    Returns whether it took effect (False off Linux/glibc). Idempotent.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # Serve every block from the heap (no mmap), and never trim the heap's top back to the OS.
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok
    return ok


def release_freed_memory() -> bool:
    """Give the whole free pages of glibc's heap back to the system (``malloc_trim(0)``).

    After :func:`keep_freed_memory`, what a finished computation freed stays resident; a next
    one whose large blocks do not fit the holes it left (a warm-up model, then the timed one, at a
    million items) would count both in the process's peak. Returns whether it ran (False off
    glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True
