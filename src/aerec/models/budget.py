"""Memory budgets given as hyperparameters (``--set memory=4GB``), shared by SANSA and ELSA.

A model whose size is a free choice (SANSA's density, ELSA's rank) can be given the memory its
fit may use instead; the model turns that into the size and records the value it chose
(``resolved_params``, written to a run's ``run.json``).
"""

from __future__ import annotations

import re

from aerec.errors import ConfigError

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_memory(value: str | int | float, field: str = "memory") -> int:
    """Bytes from ``"4GB"``, ``"512MiB"``, ``"2.5e9"`` or a number; ConfigError otherwise.

    Decimal units (GB = 10^9 bytes) and binary ones (GiB = 2^30 bytes) are both understood.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{field} must be a size such as 4GB, got {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = _PATTERN.match(str(value))
        if match is None or match.group(2).upper() not in _UNITS:
            raise ConfigError(f"{field} must be a size such as 4GB or 512MiB, got {value!r}")
        number, unit = float(match.group(1)), match.group(2).upper()
    size = int(number * _UNITS[unit])
    if size < 1:
        raise ConfigError(f"{field} must be a positive size, got {value!r}")
    return size


def format_bytes(n: float) -> str:
    """``n`` bytes in GiB (or MiB below one GiB), for messages."""
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


#: Bytes of one batch's float32 scores (batch x items) at most, wherever users are scored in
#: batches (evaluation, ``--all-users`` export, ``recommend_users``): below about 67,000 items the
#: batch size asked for is kept; at a million items a batch is 67 users.
SCORE_BLOCK_BYTES = 256 * 2**20


def score_rows(n_items: int, requested: int) -> int:
    """Users to score at once: ``requested``, or fewer where their float32 scores over
    ``n_items`` items would pass :data:`SCORE_BLOCK_BYTES` (at least 1)."""
    return max(1, min(int(requested), SCORE_BLOCK_BYTES // (4 * max(int(n_items), 1))))
