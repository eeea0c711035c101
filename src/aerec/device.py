"""Resolution of the torch device: explicit value, then ``AEREC_DEVICE``, then CUDA, then CPU."""

from __future__ import annotations

import os

import torch

from aerec.errors import ConfigError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N"`` into a :class:`torch.device`.

    ``"auto"`` (or None) reads the environment variable ``AEREC_DEVICE`` and otherwise picks CUDA
    when a GPU is present.
    """
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").strip().lower()
    if name == "auto":
        name = os.environ.get("AEREC_DEVICE", "").strip().lower() or (
            "cuda" if torch.cuda.is_available() else "cpu"
        )
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda") from None
