"""Reader of the Netflix Prize ratings, in both of the layouts it circulates in.

* The original release: ``training_set/mv_0000001.txt`` ... ``mv_0017770.txt``, one file per movie,
  whose first line is ``MovieID:`` and every further line ``CustomerID,Rating,Date``.
* The Kaggle repackaging: ``combined_data_1.txt`` ... ``combined_data_4.txt``, each a run of such
  blocks (``MovieID:`` then that movie's rating lines).

Dates are ``YYYY-MM-DD``; they become Unix seconds at midnight UTC, so the time split of Kuchaiev &
Ginsburg (train before 2005-12-01, test in December 2005) can be run with
``aerec.data.explicit_splits.time_split``.

A file is parsed in one pass by pandas' C parser (the ``-`` of the dates turned into field
separators, so that every field is an integer); only when that fails is the file scanned line by
line to raise a :class:`~aerec.errors.ParseError` naming the file, the line (1-based) and the field.
Blank lines are ignored.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from aerec.data.interactions import Interactions
from aerec.data.preprocess import drop_duplicates
from aerec.errors import DataError, EmptyDataError, ParseError

__all__ = ["NETFLIX_FILES", "netflix_files", "read_netflix", "read_netflix_titles"]

#: The rating files of each layout, as glob patterns inside the data set's folder, in the order
#: they are looked for: the Kaggle files, the movie files directly, the original archive's folder.
NETFLIX_FILES = ("combined_data_*.txt", "mv_*.txt", "training_set/mv_*.txt")
#: The movie titles (``MovieID,YearOfRelease,Title``): Kaggle's name, then the original one.
NETFLIX_TITLE_FILES = ("movie_titles.csv", "movie_titles.txt")

_HEADER = re.compile(rb"^[ \t]*(\d+):[ \t]*\r?$", re.MULTILINE)
_BLANK = re.compile(rb"^[ \t\r]*\n", re.MULTILINE)
_USER = re.compile(r"\d+")
_RATING = re.compile(r"[1-5]")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_FIELDS = ("customer", "rating", "date")


def netflix_files(path: str | Path) -> list[Path]:
    """The rating files under ``path``, in reading order.

    ``path`` may be one file, a folder holding ``combined_data_*.txt``, a folder holding
    ``mv_*.txt``, or a folder holding ``training_set/mv_*.txt`` (the original archive extracted).

    Raises
    ------
    DataError
        If ``path`` does not exist or holds none of these.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError("no such file or folder", path=path)
    for pattern in NETFLIX_FILES:
        found = sorted(path.glob(pattern))
        if found:
            return found
    raise DataError(f"no Netflix Prize files here: expected {' or '.join(NETFLIX_FILES)}",
                    path=path)


def read_netflix(path: str | Path) -> Interactions:
    """Read Netflix Prize ratings (either layout) into explicit :class:`Interactions`.

    Parameters
    ----------
    path : str or Path
        A rating file or a folder (see :func:`netflix_files`).

    Returns
    -------
    Interactions
        Ratings 1..5 with timestamps (Unix seconds of each date, midnight UTC); user ids are the
        customer ids and item ids the movie ids, as strings sorted numerically. A repeated
        (customer, movie) pair keeps its latest rating, with a warning.

    Raises
    ------
    ParseError
        On a malformed line (file, line and field named), a rating line before any ``MovieID:``
        line, or an ``mv_*.txt`` file that holds more than one movie.
    EmptyDataError
        If the files hold no ratings.
    """
    parts = [_read_file(f) for f in netflix_files(path)]
    users, movies, ratings, stamps = (np.concatenate(column) for column in zip(*parts))
    del parts  # the per-file arrays: 2.8 GB for the full training set
    if len(users) == 0:
        raise EmptyDataError(f"{path}: no ratings")
    user_ids, rows = np.unique(users, return_inverse=True)
    item_ids, cols = np.unique(movies, return_inverse=True)
    keep = drop_duplicates(rows, cols, stamps, source=str(path))
    return Interactions.from_indices(
        rows[keep], cols[keep], ratings[keep].astype(np.float32), stamps[keep],
        user_ids=user_ids.astype(str), item_ids=item_ids.astype(str), explicit=True,
    )


def read_netflix_titles(folder: str | Path) -> dict[str, str]:
    """The movie titles of a Netflix Prize folder, as ``"Title (Year)"`` like MovieLens' titles.

    Reads ``movie_titles.csv`` (Kaggle) or ``movie_titles.txt`` (the original archive): lines
    ``MovieID,YearOfRelease,Title`` in Latin-1, where a title may hold commas and the year may be
    ``NULL`` (the title is then given without one).

    Parameters
    ----------
    folder : str or Path
        The data set's folder.

    Returns
    -------
    dict of str to str
        Movie id -> title; empty when neither file is there (the titles are optional).

    Raises
    ------
    ParseError
        On a line without an integer id and a title (file and line named).
    """
    found = [Path(folder) / name for name in NETFLIX_TITLE_FILES if (Path(folder) / name).is_file()]
    if not found:
        return {}
    titles = {}
    # Latin-1 takes any byte, so an accent stored otherwise costs a character, not the load.
    with open(found[0], encoding="latin-1") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.rstrip("\r\n").split(",", 2)
            if fields == [""]:
                continue
            if len(fields) != 3 or not _USER.fullmatch(fields[0]) or not fields[2].strip():
                raise ParseError("expected 'MovieID,YearOfRelease,Title'", path=found[0],
                                 line=number)
            year = fields[1].strip()
            title = fields[2].strip()
            titles[fields[0]] = f"{title} ({year})" if year.isdigit() else title
    return titles


def _read_file(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(customers, movies, ratings, timestamps)`` of one file."""
    raw = path.read_bytes()
    try:
        return _parse_fast(path, raw)
    except (ValueError, pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError):
        pass
    _scan_for_bad_line(path, raw)
    raise ParseError("the file could not be parsed (no single bad line found)", path=path)


def _parse_fast(path: Path, raw: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    text = _BLANK.sub(b"", raw)
    headers = list(_HEADER.finditer(text))
    if not headers:
        if text.strip():
            raise ValueError("no MovieID: line")
        return _empty()
    if headers[0].start() != 0:
        raise ValueError("ratings before the first MovieID: line")
    if path.name.startswith("mv_") and len(headers) > 1:
        raise ValueError("more than one movie in an mv_ file")
    blocks, counts = [], []
    for k, header in enumerate(headers):
        stop = headers[k + 1].start() if k + 1 < len(headers) else len(text)
        block = text[header.end() + 1:stop]
        if block and not block.endswith(b"\n"):
            block += b"\n"
        blocks.append(block)
        counts.append(block.count(b"\n"))
    body = b"".join(blocks).replace(b"-", b",")
    movies = np.repeat(np.array([int(h.group(1)) for h in headers], np.int64), counts)
    if not body:
        return _empty()
    with warnings.catch_warnings():
        # pandas only warns when a line has more fields than named (and drops them)
        warnings.simplefilter("error", pd.errors.ParserWarning)
        frame = pd.read_csv(
            io.BytesIO(body), header=None, names=["c", "r", "y", "m", "d"], index_col=False,
            dtype=np.int64, skip_blank_lines=False, skipinitialspace=True, engine="c",
        )
    if len(frame) != len(movies):
        raise ValueError("line count mismatch")
    values = {k: frame[k].to_numpy() for k in "crymd"}
    if (values["c"] < 0).any() or ((values["r"] < 1) | (values["r"] > 5)).any():
        raise ValueError("customer or rating out of range")
    dates = pd.to_datetime(pd.DataFrame({"year": values["y"], "month": values["m"],
                                         "day": values["d"]}), errors="raise")
    stamps = dates.to_numpy().astype("datetime64[s]").astype(np.int64)
    return values["c"], movies, values["r"].astype(np.float32), stamps


def _empty():
    return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32),
            np.zeros(0, np.int64))


def _scan_for_bad_line(path: Path, raw: bytes) -> None:
    """Raise a ParseError at the first bad line of a file; return if every line is good."""
    movies_seen = 0
    for number, line in enumerate(raw.split(b"\n"), 1):
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ParseError("not valid UTF-8 text", path=path, line=number) from None
        if not text:
            continue
        if text.endswith(":"):
            if not _USER.fullmatch(text[:-1].strip()):
                raise ParseError(f"a movie line must be 'MovieID:', got {text!r}", path=path,
                                 line=number, field="movie")
            movies_seen += 1
            if path.name.startswith("mv_") and movies_seen > 1:
                raise ParseError("an mv_*.txt file holds one movie, but this is a second "
                                 "'MovieID:' line", path=path, line=number, field="movie")
            continue
        if movies_seen == 0:
            raise ParseError("rating line before any 'MovieID:' line", path=path, line=number)
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != 3:
            raise ParseError(f"expected 3 fields 'CustomerID,Rating,Date', found {len(fields)}",
                             path=path, line=number)
        problem = _field_problem(fields)
        if problem:
            raise ParseError(problem[1], path=path, line=number, field=problem[0])


def _field_problem(fields: list[str]) -> tuple[str, str] | None:
    customer, rating, date = fields
    if not _USER.fullmatch(customer):
        return "customer", f"customer id must be a non-negative integer, got {customer!r}"
    if not _RATING.fullmatch(rating):
        return "rating", f"rating must be an integer from 1 to 5, got {rating!r}"
    if not _DATE.fullmatch(date):
        return "date", f"date must be YYYY-MM-DD, got {date!r}"
    try:
        pd.Timestamp(date)
    except ValueError:
        return "date", f"no such date {date!r}"
    return None
