"""Reader of the Million Song Dataset's Taste Profile subset (``train_triplets.txt``).

The file (Bertin-Mahieux et al., ISMIR 2011; the "Echo Nest Taste Profile Subset") holds one
listening record per line, tab-separated: ``user`` (40 hex digits), ``song`` (an Echo Nest song id
such as ``SOAKIMP12A8C130995``) and ``play count`` (a positive integer), 48,373,586 lines for
1,019,318 users and 384,546 songs. Liang et al. (WWW 2018) use it as implicit feedback: any play
is one interaction, however many times the song was played, and so does this reader.

The file is parsed by pandas' C parser two million lines at a time, each chunk's ids turned into
integer codes before the next is read; only when that fails is it scanned line by line to raise a
:class:`~aerec.errors.ParseError` naming the file, the line (1-based) and the field.
"""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from aerec.data.interactions import Interactions
from aerec.data.preprocess import drop_duplicates
from aerec.errors import DataError, EmptyDataError, ParseError

__all__ = ["TASTE_PROFILE_FILE", "read_taste_profile"]

#: The file of the Taste Profile subset that Liang et al. use.
TASTE_PROFILE_FILE = "train_triplets.txt"

_COLUMNS = ("user", "song", "count")
_COUNT = re.compile(r"[1-9]\d*")
# Lines parsed at a time: about 0.4 GB of id strings as Python objects.
_CHUNK_LINES = 2_000_000


def read_taste_profile(path: str | Path) -> Interactions:
    """Read ``train_triplets.txt`` into implicit :class:`Interactions` (every play counts once).

    Parameters
    ----------
    path : str or Path
        The tab-separated file of ``user, song, play count`` lines (no header).

    Returns
    -------
    Interactions
        Implicit interactions of value 1 and no timestamps (the file has none); user and song ids
        as in the file, each vocabulary sorted. A repeated (user, song) pair is kept once, with a
        warning (the official file has none).

    Raises
    ------
    DataError
        If ``path`` is not a file.
    ParseError
        On a line without three fields, an empty id, or a play count that is not a positive
        integer (file, line and field named).
    EmptyDataError
        If the file holds no lines.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path=path)
    try:
        parsed = _parse_fast(path)
    except (ValueError, pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError):
        _scan_for_bad_line(path)
        raise ParseError("the file could not be parsed (no single bad line found)",
                         path=path) from None
    if parsed is None:
        raise EmptyDataError("no listening records", path=path)
    (user_ids, rows), (song_ids, cols) = parsed
    keep = drop_duplicates(rows, cols, source=str(path))
    return Interactions.from_indices(
        rows[keep], cols[keep], np.ones(len(keep), np.float32), None,
        user_ids=user_ids, item_ids=song_ids, explicit=False,
    )


def _parse_fast(path: Path) -> tuple[tuple[np.ndarray, np.ndarray], ...] | None:
    """``((user vocabulary, row of each line), (song vocabulary, column of each line))``.

    None when the file holds no lines.
    """
    users, songs = _Codes("user"), _Codes("song")
    with warnings.catch_warnings():
        # pandas only warns when a line has more fields than named (and drops them)
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            chunks = pd.read_csv(
                path, sep="\t", header=None, names=list(_COLUMNS), index_col=False,
                dtype={"user": object, "song": object, "count": np.int64}, na_filter=False,
                quoting=csv.QUOTE_NONE, engine="c", encoding="utf-8", chunksize=_CHUNK_LINES,
            )
            for chunk in chunks:
                if len(chunk) == 0:  # an empty file gives one empty chunk
                    continue
                # A count below one parses, but is no listening record.
                if (chunk["count"].to_numpy() < 1).any():
                    raise ValueError("play count below 1")
                users.add(chunk["user"].to_numpy())
                songs.add(chunk["song"].to_numpy())
        except pd.errors.EmptyDataError:
            return None
    if not users.codes:
        return None
    return users.finish(), songs.finish()


class _Codes:
    """Integer codes of string ids read chunk by chunk, and at the end their sorted vocabulary.

    Only one chunk's id strings and the vocabulary are alive at a time: the 97 million id strings
    of the whole file as Python objects would take about 8 GB.
    """

    def __init__(self, field: str) -> None:
        self.field = field
        self.vocabulary = pd.Index([], dtype=object)
        self.codes: list[np.ndarray] = []

    def add(self, ids: np.ndarray) -> None:
        codes, uniques = pd.factorize(ids)
        if (uniques == "").any():
            raise ValueError(f"empty {self.field} id")
        where = self.vocabulary.get_indexer(uniques)
        new = where < 0
        if new.any():
            where[new] = len(self.vocabulary) + np.arange(int(new.sum()))
            self.vocabulary = self.vocabulary.append(pd.Index(uniques[new], dtype=object))
        self.codes.append(where.astype(np.int32)[codes])

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """``(sorted vocabulary, index of each line's id in it)``."""
        vocabulary = np.asarray(self.vocabulary, dtype=str)
        order = np.argsort(vocabulary, kind="stable")
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        return vocabulary[order], rank[np.concatenate(self.codes)]


def _scan_for_bad_line(path: Path) -> None:
    """Raise a ParseError at the first bad line of the file; return if every line is good."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise ParseError("not valid UTF-8 text", path=path, line=number) from None
            if not text:  # pandas skips empty lines
                continue
            fields = text.split("\t")
            if len(fields) != 3:
                raise ParseError(
                    f"expected 3 tab-separated fields 'user, song, play count', found "
                    f"{len(fields)}", path=path, line=number,
                )
            for name, value in zip(_COLUMNS[:2], fields):
                if not value:
                    raise ParseError(f"empty {name} id", path=path, line=number, field=name)
            if not _COUNT.fullmatch(fields[2]):
                raise ParseError(f"play count must be a positive integer, got {fields[2]!r}",
                                 path=path, line=number, field="count")
