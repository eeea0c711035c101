"""What synthetic data can be asked for: named shapes, shaping parameters, file formats, and the
memory a request needs.

Kept apart from :mod:`aerec.data.synthetic` (the generator) so that the command line can describe
and check a request without importing NumPy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from aerec.errors import ConfigError

__all__ = ["SHAPES", "Shape", "SynthParams", "FORMATS", "memory_estimate", "check_memory"]


@dataclass(frozen=True)
class Shape:
    """The size of a data set: users, items, interactions, and whether it holds ratings."""

    n_users: int
    n_items: int
    n_interactions: int
    explicit: bool


#: Named shapes: ML-20M after the Mult-VAE paper's preprocessing (ratings >= 3.5 kept as clicks,
#: users with at least 5), its 116,677 training users, the Netflix Prize ratings, and ML-100K.
SHAPES: dict[str, Shape] = {
    "ml-20m": Shape(136_677, 20_108, 10_000_000, explicit=False),
    "ml-20m-train": Shape(116_677, 20_108, 8_536_000, explicit=False),
    "netflix": Shape(480_189, 17_770, 100_480_507, explicit=True),
    "ml-100k": Shape(943, 1_682, 100_000, explicit=True),
}


#: Largest item_exponent, item_offset and activity_sigma of :class:`SynthParams`.
MAX_EXPONENT, MAX_OFFSET, MAX_SIGMA = 10.0, 1e9, 5.0


@dataclass(frozen=True)
class SynthParams:
    """How the data is shaped besides its size (see :mod:`aerec.data.synthetic`)."""

    item_exponent: float = 1.0
    item_offset: float = 20.0
    activity_sigma: float = 1.2
    min_user: int = 5
    n_clusters: int = 20
    affinity: float = 0.5

    def check(self) -> None:
        # Bounded, not only finite: beyond these the power law's weights underflow to zero (the
        # sampler would then draw for ever) and the lognormal's draws overflow.
        for name, high in (("item_exponent", MAX_EXPONENT), ("item_offset", MAX_OFFSET),
                           ("activity_sigma", MAX_SIGMA)):
            value = getattr(self, name)
            if not 0 <= value <= high:  # NaN fails too
                raise ConfigError(f"{name} must be a number from 0 to {high:g}, got {value!r}")
        if self.min_user < 1:
            raise ConfigError("min_user must be at least 1")
        if self.n_clusters < 1:
            raise ConfigError("n_clusters must be at least 1")
        if not 0.0 <= self.affinity <= 1.0:
            raise ConfigError("affinity must be in [0, 1]")


#: File formats :func:`aerec.data.synthetic.write_synthetic` writes, and the reader that loads each.
FORMATS = {
    "csv": "aerec.data.readers.read_ratings_csv (explicit) or read_table(user_col='userId', "
           "item_col='movieId') (implicit)",
    "tsv": "aerec.data.readers.read_table(..., file_format='tsv')",
    "parquet": "aerec.data.readers.read_table(..., file_format='parquet'), needs pyarrow",
    "lightgcn": "aerec.data.readers.read_lightgcn (implicit data only)",
}

#: Users per generation chunk. Part of the output's definition: changing it changes the data.
CHUNK_USERS = 16_384
# Bytes the generator holds per item (popularity, CDFs, clusters, biases: about a dozen float64
# and int64 arrays), per user (activity draws, counts, favourite group and their temporaries) and
# per interaction of a chunk in flight (rows, columns, sort keys, ratings, timestamps and the
# text of the chunk). Measured peaks of synthesize() and write_synthetic() stay below these.
_BYTES_PER_ITEM = 128
_BYTES_PER_USER = 64
_BYTES_PER_CHUNK_INTERACTION = 128
# Held for the whole result by synthesize(): an int32 column and a float32 value, plus an int64
# timestamp for ratings, and the concatenation's copy of each.
_BYTES_PER_KEPT_INTERACTION = 16
_BYTES_PER_KEPT_RATING = 32


def memory_estimate(shape: Shape, *, in_memory: bool) -> int:
    """Bytes the generator needs at its peak for ``shape`` (an upper estimate).

    Parameters
    ----------
    shape : Shape
        The sizes asked for.
    in_memory : bool
        True for :func:`~aerec.data.synthetic.synthesize`, which keeps every interaction; False
        for :func:`~aerec.data.synthetic.write_synthetic`, which keeps one chunk of users.
    """
    users, items, total = shape.n_users, shape.n_items, shape.n_interactions
    # A chunk holds its users' share of the interactions, at most every item for each of them.
    chunk = min(total, CHUNK_USERS * items, -(-total * min(CHUNK_USERS, users) // users) * 2)
    estimate = _BYTES_PER_ITEM * items + _BYTES_PER_USER * users
    estimate += _BYTES_PER_CHUNK_INTERACTION * chunk
    if in_memory:
        per = _BYTES_PER_KEPT_RATING if shape.explicit else _BYTES_PER_KEPT_INTERACTION
        estimate += per * total + 8 * users
    return estimate


def available_memory() -> int | None:
    """Bytes of memory this process could still get (Linux's MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(shape: Shape, *, in_memory: bool, available: int | None = None) -> None:
    """Refuse, before any work, a request whose estimate exceeds the memory available.

    Raises
    ------
    ConfigError
        Naming the sizes, the estimate and what the machine has.
    """
    available = available_memory() if available is None else available
    need = memory_estimate(shape, in_memory=in_memory)
    if available is not None and need > available:
        raise ConfigError(
            f"{shape.n_users:,} users x {shape.n_items:,} items with {shape.n_interactions:,} "
            f"interactions need about {_gib(need)} of memory; {_gib(available)} is available: "
            "ask for smaller sizes")


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"
