"""Readers of rating files: the MovieLens releases, generic tables and LightGCN's splits.

Every reader returns an :class:`~aerec.data.interactions.Interactions` whose raw ids are strings.
Delimited text is parsed by pandas' C parser with explicit dtypes, so that ML-20M's 20 million rows
load in seconds. Only when that fails (or leaves a hole) is the file scanned again line by line, to
report the first bad line as an editor numbers it (the header is line 1), with the field.

A (user, item) pair that occurs more than once keeps its latest interaction (by timestamp, else
the last line) and a :class:`~aerec.data.preprocess.DuplicateInteractionsWarning` says how many
were dropped and in which file; a table may ask for another rule (``duplicates=``).

The timestamps of a table may be integers (Unix seconds) or ISO 8601 date-times, with or
without a zone, as a shop's export writes them (:func:`aerec.data.frames.text_timestamps`): a
CSV gives the same seconds as the same column in Parquet.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aerec.data.columns import Columns, detect_columns
from aerec.data.encoding import combine_duplicates, encode_ids
from aerec.data.frames import FLOAT32_MAX, frame_arrays, text_timestamps
from aerec.data.interactions import Interactions
from aerec.data.preprocess import drop_duplicates
from aerec.errors import ConfigError, DataError, EmptyDataError, ParseError
from aerec.input_files import check_input_file

__all__ = [
    "FILE_FORMATS",
    "TITLE_FILES",
    "read_file",
    "read_item_titles",
    "read_lightgcn",
    "read_ml100k",
    "read_ratings_csv",
    "read_ratings_dat",
    "read_table",
    "resolve_data_argument",
]

# What pandas' C parser accepts, written strictly, so that the line scan never passes a value
# that pandas rejected (Python's int() and float() also take "1_000", "inf" and "nan"). Like
# pandas, an integer column takes integral decimals such as "4.0".
_INT = re.compile(r"[+-]?\d+(?:\.0*)?")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

_FORMAT_SEPARATORS = {"csv": ",", "tsv": "\t"}
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


@dataclass(frozen=True)
class _Delimited:
    """How to read one delimited text file."""

    path: Path
    sep: str
    columns: tuple[str, ...]  # every column of the file, in order
    header: bool
    fields: Columns
    int_ids: bool  # MovieLens ids are integers; parsing them as such is what makes ML-20M fast
    encoding: str = "utf-8"
    text_times: bool = False  # timestamps may be ISO 8601 text (tables), not only integers
    duplicates: str | None = None  # None: the latest of a repeated pair, with a warning

    @property
    def first_data_line(self) -> int:
        return 2 if self.header else 1


_MOVIELENS_COLUMNS = ("user", "item", "rating", "timestamp")
_MOVIELENS_FIELDS = Columns("user", "item", "rating", "timestamp")
_MOVIELENS_CSV_FIELDS = Columns("userId", "movieId", "rating", "timestamp")


# -- public readers ------------------------------------------------------------------------------
def read_ml100k(path: str | Path) -> Interactions:
    """Read a MovieLens 100K rating file (``u.data``, ``u1.base``, ``ua.test``, ...).

    Parameters
    ----------
    path : str or Path
        A tab-separated file of ``user item rating timestamp`` lines, no header.

    Returns
    -------
    Interactions
        Explicit ratings with timestamps.

    Raises
    ------
    ParseError
        On a line with the wrong number of fields or a bad value (file, line and field named).
    EmptyDataError
        If the file holds no ratings.
    """
    return _read_delimited(_Delimited(
        Path(path), "\t", _MOVIELENS_COLUMNS, header=False, fields=_MOVIELENS_FIELDS, int_ids=True,
    ))


def read_ratings_dat(path: str | Path) -> Interactions:
    """Read the ``ratings.dat`` of MovieLens 1M or 10M (``user::item::rating::timestamp``).

    Parameters
    ----------
    path : str or Path
        A ``::``-separated file, no header.

    Returns
    -------
    Interactions
        Explicit ratings with timestamps.

    Raises
    ------
    ParseError
        On a line with the wrong number of fields or a bad value (file, line and field named).
    EmptyDataError
        If the file holds no ratings.
    """
    return _read_delimited(_Delimited(
        Path(path), "::", _MOVIELENS_COLUMNS, header=False, fields=_MOVIELENS_FIELDS, int_ids=True,
    ))


def read_ratings_csv(path: str | Path) -> Interactions:
    """Read the ``ratings.csv`` of MovieLens 20M, 25M or latest(-small).

    Parameters
    ----------
    path : str or Path
        A CSV file whose header names ``userId,movieId,rating,timestamp``.

    Returns
    -------
    Interactions
        Explicit ratings with timestamps.

    Raises
    ------
    DataError
        If a column is missing from the header.
    ParseError
        On a line with the wrong number of fields or a bad value (file, line and field named).
    EmptyDataError
        If the file holds no ratings.
    """
    path = Path(path)
    columns = _header_columns(path, ",", "utf-8")
    # Naming every column makes detect_columns a check that the header has them all.
    detect_columns(columns, source=str(path), **_MOVIELENS_CSV_FIELDS.used())
    return _read_delimited(_Delimited(
        path, ",", columns, header=True, fields=_MOVIELENS_CSV_FIELDS, int_ids=True,
    ))


def read_table(
    path: str | Path,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    sep: str | None = None,
    file_format: str | None = None,
    quantity_col: str | None = None,
    duplicates: str | None = None,
) -> Interactions:
    """Read interactions from a CSV, TSV or Parquet table with named columns.

    A column not named here is found by its common name, ignoring case (``user``, ``user_id``,
    ``customer_id``, ...; ``item``, ``item_id``, ``movieId``, ``product_id``, ``sku``, ...;
    ``rating``, ``score``; ``timestamp``, ``purchased_at``, ``order_date``, ...; ``quantity``,
    ``qty``: see :data:`aerec.data.columns.COLUMN_ALIASES`).

    Parameters
    ----------
    path : str or Path
        The table. Text tables need a header line naming the columns.
    user_col, item_col : str, optional
        Columns of the user and item ids (any strings).
    rating_col : str, optional
        Column of the ratings; without one (named or found) the interactions are implicit
        (``explicit=False``).
    timestamp_col : str, optional
        Column of integer Unix timestamps or ISO 8601 date-times (``2026-01-01 00:09:19``,
        ``2026-01-01T00:09:19Z``, ``...+02:00``; without a zone read as UTC); Parquet timestamp
        columns are converted to seconds the same way.
    sep : str, optional
        One-character field separator of a text table; by default ``,`` for CSV and a tab for TSV.
    file_format : {"csv", "tsv", "parquet"}, optional
        Guessed from the suffix (``.csv``, ``.tsv``, ``.parquet``) when not given.
    quantity_col : str, optional
        Column of quantities (units bought), the values of implicit interactions; not used
        beside a rating column.
    duplicates : {"last", "sum", "max", "error"}, optional
        What a (user, item) pair on several lines becomes (see
        :meth:`Interactions.from_arrays <aerec.data.interactions.Interactions.from_arrays>`). By
        default its latest line, with a warning that says how many were dropped.

    Returns
    -------
    Interactions

    Raises
    ------
    ConfigError
        If the format cannot be guessed or ``sep`` is not one character.
    DataError
        If a named column does not exist, no user or item column is found, or two columns
        could serve one role (the message lists the columns).
    ParseError
        On a malformed line or a bad value (file, line and field named).
    EmptyDataError
        If the table has no rows.
    aerec.extras.MissingExtraError
        If a Parquet file is read without pyarrow (``pip install aerec[parquet]``), an ImportError.
    """
    path = Path(path)
    named = {"user": user_col, "item": item_col, "rating": rating_col, "timestamp": timestamp_col,
             "quantity": quantity_col}
    file_format = _guess_format(path, file_format)
    if file_format == "parquet":
        pq = _pyarrow_parquet(path)
        with _parquet_errors(path):
            names = pq.read_schema(path).names
        fields = detect_columns(names, source=str(path), **named)
        return _read_parquet(path, fields, duplicates)
    sep = _FORMAT_SEPARATORS[file_format] if sep is None else sep
    if len(sep) != 1:
        raise ConfigError(f"sep must be one character, got {sep!r}")
    columns = _header_columns(path, sep, "utf-8")
    fields = detect_columns(columns, source=str(path), **named)
    text_times = fields.timestamp is not None and not _integer_first(
        path, sep, columns.index(fields.timestamp))
    return _read_delimited(_Delimited(path, sep, columns, header=True, fields=fields,
                                      int_ids=False, text_times=text_times,
                                      duplicates=duplicates))


def _integer_first(path: Path, sep: str, position: int) -> bool:
    """Whether the first data line's field at ``position`` is an integer (or there is none).

    Integer timestamps are parsed by pandas' C parser, ten times faster than text turned into
    seconds afterwards; only a column that starts with a date-time is read as text.
    """
    for line, fields in _records(_text_lines(path, "utf-8"), sep):
        if line > 1:
            return position >= len(fields) or _INT.fullmatch(fields[position].strip()) is not None
    return True


def read_lightgcn(
    path: str | Path,
    *,
    user_ids: np.ndarray | list[str] | None = None,
    item_ids: np.ndarray | list[str] | None = None,
) -> Interactions:
    """Read a LightGCN benchmark split (``train.txt`` / ``test.txt``).

    Each line holds a user id followed by the ids of its items, separated by spaces. A line with
    a user id and no items is allowed (LightGCN's ``test.txt`` has some): the user is kept, as a
    row with no interactions, so that row indices stay aligned with the other split.

    Parameters
    ----------
    path : str or Path
        The split file.
    user_ids, item_ids : array-like of str, optional
        Vocabularies to read into (for instance those of ``train.txt`` when reading
        ``test.txt``); every id in the file must then be in them. Without them the vocabularies
        are the ids of the file, sorted numerically.

    Returns
    -------
    Interactions
        Implicit interactions (``explicit=False``), no timestamps.

    Raises
    ------
    ParseError
        If an id is not a non-negative integer (file, line and field named).
    DataError
        If an id is not in the vocabulary given.
    EmptyDataError
        If the file holds no user line.
    """
    path = Path(path)
    users, user_lines, items, item_lines = _lightgcn_tokens(path)
    rows, u_vocab = _encode_lightgcn(users, user_lines, user_ids, path, "user")
    cols, i_vocab = _encode_lightgcn(items, item_lines, item_ids, path, "item")
    # Repeat each user's row once per item it lists; users without items add no interaction.
    item_rows = rows[np.searchsorted(user_lines, item_lines)]
    keep = drop_duplicates(item_rows, cols, source=str(path))
    return Interactions.from_indices(
        item_rows[keep], cols[keep], np.ones(len(keep), np.float32), None,
        user_ids=u_vocab, item_ids=i_vocab, explicit=False,
    )


# -- any file by format name ---------------------------------------------------------------------
def _table_reader(file_format: str) -> Callable[..., Interactions]:
    def read(path: Path, **options) -> Interactions:
        return read_table(path, file_format=file_format, **options)

    return read


#: Readers by format name, for :func:`read_file` and the ``--format`` option of ``aerec train``
#: (which also takes ``"auto"``, to guess from the file's name).
FILE_FORMATS: dict[str, Callable[..., Interactions]] = {
    "ml-100k": read_ml100k,
    "dat": read_ratings_dat,
    "ratings-csv": read_ratings_csv,
    "csv": _table_reader("csv"),
    "tsv": _table_reader("tsv"),
    "parquet": _table_reader("parquet"),
    "lightgcn": read_lightgcn,
}

_ML100K_FILE = re.compile(r"u[0-9ab]?\.(?:data|base|test)")
_TABLE_OPTIONS = {"user_col", "item_col", "rating_col", "timestamp_col", "quantity_col", "sep",
                  "duplicates"}
_FORMAT_OPTIONS = {"csv": _TABLE_OPTIONS, "tsv": _TABLE_OPTIONS, "parquet": _TABLE_OPTIONS,
                   "lightgcn": {"user_ids", "item_ids"}}
_MOVIELENS_HEADER = ("userId", "movieId", "rating", "timestamp")


def read_file(path: str | Path, file_format: str = "auto", **options) -> Interactions:
    """Read a file in a named format, or in the one its name implies.

    Parameters
    ----------
    path : str or Path
        The file.
    file_format : str
        A key of :data:`FILE_FORMATS`, or ``"auto"`` to go by the name: ``u.data`` /
        ``u1.base`` / ``ua.test`` ... are ml-100k, ``.dat`` is ``::``-separated, ``.txt`` is
        lightgcn, and ``.csv`` / ``.tsv`` / ``.parquet`` are tables (a ``.csv`` whose header is
        exactly ``userId,movieId,rating,timestamp`` takes the faster ratings-csv reader).
    **options
        For tables, the keywords of :func:`read_table` (``user_col``, ``item_col``,
        ``rating_col``, ``timestamp_col``, ``sep``); a column not named is found by its common
        name (``user``, ``userId``, ``item``, ``movieId``, ``rating``, ...). For lightgcn,
        ``user_ids`` and ``item_ids``. Other formats take none.

    Returns
    -------
    Interactions

    Raises
    ------
    ConfigError
        If the format is unknown or cannot be guessed, or an option does not apply to it.
    DataError
        If the file does not exist, is not a regular file, or is binary where text is expected.
    """
    path = Path(path)
    if file_format != "auto" and file_format not in FILE_FORMATS:
        raise ConfigError(
            f"unknown format {file_format!r}; valid formats: auto, {', '.join(FILE_FORMATS)}"
        )
    check_input_file(path, text=False)  # a folder, a device (/dev/zero), a FIFO: refused
    if file_format == "auto":
        file_format = _detect_format(path, options)
    if file_format != "parquet":  # a binary file given as text would be parsed as garbage
        check_input_file(path)
    _check_options(options, _FORMAT_OPTIONS.get(file_format, set()), file_format)
    return FILE_FORMATS[file_format](path, **options)


# -- a data set's name or a file's path ---------------------------------------------------------
#: Suffixes that make a ``--data`` value a file's path even before it is found.
_FILE_SUFFIXES = (".csv", ".tsv", ".parquet", ".dat", ".txt", ".data", ".base", ".test")


def resolve_data_argument(value: str, datasets: Iterable[str]) -> tuple[str, str | Path]:
    """Tell whether a ``--data`` value names a data set or a file of interactions.

    A known data set's name is a data set, unless written as a path (``./ml-100k``). Anything
    that is a file, holds a path separator or ends in a data file's suffix (``.csv``, ``.tsv``,
    ``.parquet``, ``.dat``, ``.txt``, ...) is a file, and must exist.

    Parameters
    ----------
    value : str
        The value given.
    datasets : iterable of str
        The data sets' names (``aerec.data.datasets.DATASETS``; passed in because that module
        imports this one).

    Returns
    -------
    tuple
        ``("dataset", name)`` or ``("file", Path)``.

    Raises
    ------
    DataError
        If ``value`` looks like a file that does not exist, or is a folder.
    ConfigError
        If it is neither a data set's name nor a file's path (the message lists the names).
    """
    names = sorted(datasets)
    path = Path(value)
    as_path = "/" in value or "\\" in value
    if value in names and not as_path:
        return "dataset", value
    if path.is_file():
        return "file", path
    if path.is_dir():
        raise DataError("is a folder; give a file of interactions (.csv, .tsv, .parquet, ...) "
                        f"or a data set's name ({', '.join(names)})", path=path)
    if as_path or path.suffix.lower() in _FILE_SUFFIXES:
        raise DataError("file not found", path=path)
    raise ConfigError(f"{value!r} is neither a data set ({', '.join(names)}) nor an existing "
                      f"file of interactions")


def _detect_format(path: Path, options: dict) -> str:
    suffix = path.suffix.lower()
    if _ML100K_FILE.fullmatch(path.name):
        return "ml-100k"
    if suffix == ".csv" and not options and _has_movielens_header(path):
        return "ratings-csv"
    guesses = {".dat": "dat", ".txt": "lightgcn", ".csv": "csv", ".tsv": "tsv",
               ".parquet": "parquet"}
    if suffix not in guesses:
        raise ConfigError(
            f"cannot tell the format of {path} from its name; give one of "
            f"{', '.join(FILE_FORMATS)} (--format)"
        )
    return guesses[suffix]


def _has_movielens_header(path: Path) -> bool:
    return _header_columns(path, ",", "utf-8") == _MOVIELENS_HEADER


def _check_options(options: dict, allowed: set[str], file_format: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        valid = ", ".join(sorted(allowed)) or "none"
        raise ConfigError(
            f"option(s) {', '.join(unknown)} do not apply to the {file_format} format "
            f"(valid: {valid})"
        )


# -- item titles ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TitleFile:
    """Where a MovieLens release keeps its movie titles and how the file is written."""

    name: str
    sep: str
    encoding: str


TITLE_FILES: dict[str, TitleFile] = {
    "ml-100k": TitleFile("u.item", "|", "latin-1"),
    "ml-1m": TitleFile("movies.dat", "::", "latin-1"),
    "ml-10m": TitleFile("movies.dat", "::", "utf-8"),
    "ml-20m": TitleFile("movies.csv", ",", "utf-8"),
    "ml-25m": TitleFile("movies.csv", ",", "utf-8"),
    "ml-latest-small": TitleFile("movies.csv", ",", "utf-8"),
}


def read_item_titles(directory: str | Path, dataset_name: str) -> dict[str, str]:
    """Read the movie titles of a MovieLens release.

    Parameters
    ----------
    directory : str or Path
        The extracted release (the folder that holds ``u.item``, ``movies.dat`` or ``movies.csv``).
    dataset_name : str
        One of the keys of :data:`TITLE_FILES` (``"ml-100k"``, ``"ml-1m"``, ...).

    Returns
    -------
    dict of str to str
        Raw item id -> title, for instance ``"1" -> "Toy Story (1995)"``.

    Raises
    ------
    ConfigError
        If ``dataset_name`` is unknown.
    ParseError
        On a line without an id and a title.
    """
    if dataset_name not in TITLE_FILES:
        raise ConfigError(
            f"no title format for {dataset_name!r}; known: {', '.join(sorted(TITLE_FILES))}"
        )
    spec = TITLE_FILES[dataset_name]
    path = Path(directory) / spec.name
    lines = _title_lines(path, spec.encoding)
    if spec.sep == ",":
        records = csv.reader(lines)
        return _titles_from_records(path, ((records.line_num, r) for r in records), header=True)
    numbered = ((n, line.split(spec.sep)) for n, line in enumerate(lines, 1))
    return _titles_from_records(path, numbered, header=False)


def _title_lines(path: Path, encoding: str) -> Iterator[str]:
    """Decoded lines; one not valid in ``encoding`` is read as latin-1 (which takes any byte).

    The encodings of the older releases are documented nowhere, so a wrong guess should cost a
    few accents in titles rather than the whole load.
    """
    with open(path, "rb") as handle:
        for raw in handle:
            try:
                yield raw.decode(encoding)
            except UnicodeDecodeError:
                yield raw.decode("latin-1")


def _titles_from_records(
    path: Path, records: Iterator[tuple[int, list[str]]], *, header: bool
) -> dict[str, str]:
    titles = {}
    for line, fields in records:
        if (header and line == 1) or not any(f.strip() for f in fields):
            continue
        if len(fields) < 2:
            raise ParseError("expected an id and a title", path=path, line=line, field="title")
        titles[fields[0].strip()] = fields[1].strip()
    return titles


# -- delimited text: fast path -------------------------------------------------------------------
def _read_delimited(spec: _Delimited) -> Interactions:
    try:
        frame = _parse_with_pandas(spec)
        _check_complete(frame, spec)
        if spec.text_times and "timestamp" in spec.fields.used():
            # integers or ISO 8601 text, as seconds; a bad one is a ValueError (BadTimestamp)
            column = spec.fields.used()["timestamp"]
            frame[column] = text_timestamps(frame[column].to_numpy())
    except (ValueError, OverflowError, UnicodeDecodeError, pd.errors.ParserWarning,
            RuntimeWarning) as exc:
        # Locate the first bad line; pandas' own messages give neither our line numbers nor the
        # field. Only if the scan finds nothing (which it should not) is pandas' message passed on.
        _scan_for_bad_line(spec)
        raise ParseError(f"could not be parsed ({exc})", path=spec.path) from exc
    if len(frame) == 0:
        raise EmptyDataError("no interactions (the file has no data lines)", path=spec.path)
    used = spec.fields.used()
    return _build(
        frame[used["user"]].to_numpy(), frame[used["item"]].to_numpy(),
        frame[used["rating"]].to_numpy() if "rating" in used else None,
        frame[used["timestamp"]].to_numpy() if "timestamp" in used else None,
        source=str(spec.path),
        quantities=frame[used["quantity"]].to_numpy() if "quantity" in used else None,
        duplicates=spec.duplicates,
    )


def _parse_with_pandas(spec: _Delimited) -> pd.DataFrame:
    source: str | Path | io.BytesIO = spec.path
    sep = spec.sep
    if len(sep) > 1:
        # The C parser takes one-character separators only; the python engine would take "::"
        # but is ten times slower, so the separator is rewritten in memory instead.
        source = io.BytesIO(spec.path.read_bytes().replace(sep.encode(), b"\t"))
        sep = "\t"
    id_type = "int64" if spec.int_ids else "str"
    dtypes = {"user": id_type, "item": id_type, "rating": "float64", "quantity": "float64",
              "timestamp": "str" if spec.text_times else "int64"}
    dtype = {column: dtypes[field] for field, column in spec.fields.used().items()}
    with warnings.catch_warnings():
        # A first line with too many fields only warns; make it an error like later lines.
        warnings.simplefilter("error", pd.errors.ParserWarning)
        # So does an integer too large for int64 written as a decimal ("1e30", "9...9.0"),
        # which numpy would otherwise cast to a wrong value with only a warning.
        warnings.simplefilter("error", RuntimeWarning)
        return pd.read_csv(
            # Our names replace the header's, which _header_columns has already read and cleaned.
            source, sep=sep, engine="c", header=0 if spec.header else None,
            names=list(spec.columns), index_col=False, dtype=dtype,
            encoding=spec.encoding, keep_default_na=False, na_values=[""],
        )


def _check_complete(frame: pd.DataFrame, spec: _Delimited) -> None:
    """Raise ValueError when the parse left holes that pandas does not count as errors."""
    if len(frame.columns) != len(spec.columns):
        raise ValueError(f"expected {len(spec.columns)} columns, found {len(frame.columns)}")
    # Short lines become missing values rather than errors, and "inf" passes as a float.
    for field, column in spec.fields.used().items():
        values = frame[column]
        if values.isna().any():
            raise ValueError(f"missing values in column {column!r}")
        # Values are stored as float32: a larger one (1e300) would become infinity there.
        if field in ("rating", "quantity") and not (np.abs(values.to_numpy()) <= FLOAT32_MAX).all():
            raise ValueError(f"non-finite or too large values in column {column!r}")
        if field == "quantity" and (values.to_numpy() < 0).any():
            raise ValueError(f"negative values in column {column!r}")


# -- delimited text: the line scan that names the bad line ---------------------------------------
def _scan_for_bad_line(spec: _Delimited) -> None:
    """Raise a ParseError for the first bad line of ``spec.path``; return if every line is good."""
    try:
        with open(spec.path, encoding=spec.encoding, newline="") as handle:
            _scan_lines(spec, handle)
    except UnicodeDecodeError:
        # Text mode decodes ahead in blocks and cannot say which line holds the bad byte;
        # decoding line by line can. It is slower, which matters little on this path.
        _scan_lines(spec, _text_lines(spec.path, spec.encoding))


def _scan_lines(spec: _Delimited, lines: Iterable[str]) -> None:
    n_columns = len(spec.columns)
    position = {column: k for k, column in enumerate(spec.columns)}
    checks = [(position[column], field, column, _quick_check(field, spec))
              for field, column in spec.fields.used().items()]
    for line, fields in _records(lines, spec.sep):
        if line < spec.first_data_line:
            continue
        if len(fields) != n_columns:
            raise ParseError(
                f"expected {n_columns} fields separated by {spec.sep!r}, found {len(fields)}",
                path=spec.path, line=line,
            )
        for k, field, column, looks_good in checks:
            # A cheap test passes nearly every good value; the rest get the exact check.
            if not looks_good(fields[k]):
                problem = _value_problem(field, fields[k].strip(), spec)
                if problem:
                    raise ParseError(problem, path=spec.path, line=line, field=column)


def _records(lines: Iterable[str], sep: str) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of each non-blank line, quoting handled as pandas does."""
    if len(sep) > 1:
        for number, line in enumerate(lines, 1):
            if line.strip():
                yield number, line.rstrip("\r\n").split(sep)
        return
    reader = csv.reader(lines, delimiter=sep)
    for fields in reader:
        if fields:
            yield reader.line_num, fields


def _quick_check(field: str, spec: _Delimited) -> Callable[[str], bool]:
    """A test that plain good values of ``field`` pass, several times faster than a regex."""
    if field in ("rating", "quantity"):
        return _plain_decimal
    if field == "timestamp" and spec.text_times:
        return _plain_time
    if field == "timestamp" or spec.int_ids:
        return _plain_integer
    return _non_blank


# Digits of a plain value the quick checks pass: int64 holds every 18-digit integer, and a decimal
# this short is finite. Longer values get the exact check, which tests the range.
_SHORT = 19


def _plain_integer(text: str) -> bool:
    return len(text) < _SHORT and text.isdigit() and text.isascii()


# An ISO 8601 date, date-time, and zone as a shop's export writes them.
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
                       r"(?:Z|[+-]\d{2}(?::?\d{2})?)?)?")


def _plain_time(text: str) -> bool:
    return _plain_integer(text) or _ISO_TIME.fullmatch(text.strip()) is not None


def _plain_decimal(text: str) -> bool:
    return len(text) < _SHORT and text.replace(".", "", 1).isdigit() and text.isascii()


def _non_blank(text: str) -> bool:
    return bool(text) and not text.isspace()


def _text_lines(path: Path, encoding: str) -> Iterator[str]:
    """Decoded lines of a file; a byte that does not decode is reported with its line."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                yield raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise ParseError(
                    f"not valid {encoding} ({exc.reason})", path=path, line=number
                ) from exc


def _value_problem(field: str, text: str, spec: _Delimited) -> str | None:
    """What is wrong with one field's text, or None."""
    label = {"user": "user id", "item": "item id"}.get(field, field)
    if not text:
        return f"missing {label}"
    if field == "timestamp" and spec.text_times and not _INT.fullmatch(text):
        return (None if _ISO_TIME.fullmatch(text) else
                f"timestamp {text!r} is neither an integer nor an ISO 8601 date-time "
                "(2026-01-01 00:09:19, 2026-01-01T00:09:19Z, ...)")
    if field == "quantity" and _FLOAT.fullmatch(text) and float(text) < 0:
        return f"quantity {text} is negative"
    if field == "quantity" and not _FLOAT.fullmatch(text):
        return f"quantity {text!r} is not a number"
    integer = field == "timestamp" or (field in ("user", "item") and spec.int_ids)
    if integer and not _INT.fullmatch(text):
        return f"{label} {text!r} is not an integer"
    if integer and not _INT64_MIN <= int(text.partition(".")[0]) <= _INT64_MAX:
        return f"{label} {text} is beyond the range of a 64-bit integer"
    if field == "rating" and not _FLOAT.fullmatch(text):
        return f"rating {text!r} is not a number"
    if field == "rating" and not np.isfinite(float(text)):
        return f"rating {text} is too large (not finite)"
    if field == "rating" and not abs(float(text)) <= FLOAT32_MAX:
        return f"rating {text} is too large (ratings are float32: at most {FLOAT32_MAX:.3g})"
    return None


# -- headers and formats -------------------------------------------------------------------------
def _header_columns(path: Path, sep: str, encoding: str) -> tuple[str, ...]:
    header = next(csv.reader(_text_lines(path, encoding), delimiter=sep), None)
    if not header or not any(h.strip() for h in header):
        raise EmptyDataError("the file is empty (no header line)", path=path, line=1)
    # Spreadsheet exports often start with a byte-order mark, which is not part of the name.
    return tuple(h.strip().lstrip("\ufeff") for h in header)


def _guess_format(path: Path, file_format: str | None) -> str:
    known = ("csv", "tsv", "parquet")
    if file_format is None:
        file_format = path.suffix.lower().lstrip(".")
        if file_format not in known:
            raise ConfigError(
                f"cannot tell the format of {path} from its suffix; "
                f"pass file_format= one of {known}"
            )
    if file_format not in known:
        raise ConfigError(f"unknown file_format {file_format!r}; expected one of {known}")
    return file_format


# -- parquet -------------------------------------------------------------------------------------
def _pyarrow_parquet(path: Path):
    """``pyarrow.parquet``, or a MissingExtraError (an ImportError) naming the extra."""
    from aerec.extras import require

    return require("pyarrow.parquet", "parquet", f"reading {path}")


def _read_parquet(path: Path, fields: Columns, duplicates: str | None) -> Interactions:
    pq = _pyarrow_parquet(path)
    used = fields.used()
    with _parquet_errors(path):
        table = pq.read_table(path, columns=list(dict.fromkeys(used.values())))
    frame = table.to_pandas()
    arrays = frame_arrays(frame, fields, source=str(path))
    return _build(arrays["user"], arrays["item"], arrays.get("rating"), arrays.get("timestamp"),
                  source=str(path), quantities=arrays.get("quantity"), duplicates=duplicates)


@contextlib.contextmanager
def _parquet_errors(path: Path):
    """pyarrow's errors for a damaged file (ArrowInvalid, a ValueError; ArrowIOError, an OSError)
    as one ParseError naming it. A missing or unreadable file stays the OSError it is."""
    try:
        yield
    except (FileNotFoundError, PermissionError):
        raise
    except (ValueError, OSError) as exc:
        text = str(exc).strip()
        reason = text.splitlines()[0][:200] if text else type(exc).__name__
        raise ParseError(f"not a readable Parquet file ({reason})", path=path) from None


# -- from columns to Interactions ----------------------------------------------------------------
def _build(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray | None,
    timestamps: np.ndarray | None,
    *,
    source: str,
    quantities: np.ndarray | None = None,
    duplicates: str | None = None,
) -> Interactions:
    """Encode raw ids, resolve duplicate pairs and build the CSR matrix.

    The values are the ratings, else the quantities (implicit), else ones; ``duplicates`` is
    the rule for repeated pairs (None: the latest, with a warning).
    """
    rows, user_vocab = encode_ids(users)
    cols, item_vocab = encode_ids(items)
    values = (ratings if ratings is not None else quantities if quantities is not None
              else np.ones(len(rows), np.float32))
    if duplicates is None:
        # Dropping duplicates never removes the last interaction of a user or item, so the
        # vocabularies built above stay exact (so does combine_duplicates).
        keep = drop_duplicates(rows, cols, timestamps, source=source)
        if len(keep) < len(rows):
            rows, cols, values = rows[keep], cols[keep], values[keep]
            timestamps = None if timestamps is None else timestamps[keep]
    else:
        try:
            rows, cols, values, timestamps = combine_duplicates(
                rows, cols, values, timestamps, duplicates, user_ids=user_vocab,
                item_ids=item_vocab)
        except DataError as exc:
            raise DataError(exc.message, path=source) from None
    values = np.asarray(values).astype(np.float32)
    return Interactions.from_indices(
        rows, cols, values, timestamps, user_ids=user_vocab, item_ids=item_vocab,
        explicit=ratings is not None,
    )


# -- LightGCN ------------------------------------------------------------------------------------
def _lightgcn_tokens(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(users, user_lines, items, item_lines)``: every id with the line it is on."""
    users, user_lines, items, item_lines = [], [], [], []
    for number, line in enumerate(_text_lines(path, "utf-8"), 1):
        tokens = line.split()
        if not tokens:
            continue
        if not ("".join(tokens).isdigit() and line.isascii()):
            _raise_bad_lightgcn_token(path, number, tokens)
        users.append(tokens[0])
        user_lines.append(number)
        items.extend(tokens[1:])
        item_lines.extend([number] * (len(tokens) - 1))
    if not users:
        raise EmptyDataError("no user lines", path=path)
    return (np.array(users, dtype=str), np.array(user_lines, np.int64),
            np.array(items, dtype=str), np.array(item_lines, np.int64))


def _raise_bad_lightgcn_token(path: Path, line: int, tokens: list[str]) -> None:
    for k, token in enumerate(tokens):
        if not (token.isascii() and token.isdigit()):
            field = "user" if k == 0 else "item"
            raise ParseError(f"{field} id {token!r} is not a non-negative integer",
                             path=path, line=line, field=field)


def _encode_lightgcn(
    ids: np.ndarray,
    lines: np.ndarray,
    vocabulary: np.ndarray | list[str] | None,
    path: Path,
    field: str,
) -> tuple[np.ndarray, np.ndarray]:
    if vocabulary is None:
        if len(ids) == 0:
            return np.zeros(0, np.int64), np.zeros(0, dtype=str)
        return encode_ids(ids)
    vocabulary = np.asarray(vocabulary).astype(str)
    codes = pd.Index(vocabulary).get_indexer(ids)
    if (codes < 0).any():
        first = int(np.flatnonzero(codes < 0)[0])
        raise DataError(
            f"{field} id {str(ids[first])!r} is not in the {field} vocabulary given "
            f"({(codes < 0).sum()} ids of the file are not)",
            path=path, line=int(lines[first]), field=field,
        )
    return codes.astype(np.int64), vocabulary
