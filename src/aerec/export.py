"""Batch export: the top-n items of many users, streamed to a Parquet or CSV file.

One table, columns ``user`` (raw id), ``rank`` (1 = best), ``item`` (raw id), ``score``. Users are
scored a batch at a time and each batch is written before the next is scored, so memory holds one
batch of scores and one batch of rows whatever the number of users (a Parquet row group per batch).
The file appears whole or not at all: rows go to a temporary file beside it, renamed over the
target only when every batch is written; on any error the temporary file is removed and an
existing file of that name is left as it was.

Parquet needs pyarrow (``pip install 'aerec[parquet]'``); CSV needs nothing beyond pandas.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from aerec.data.interactions import Interactions
from aerec.data.splits import Split
from aerec.errors import ConfigError, DataError
from aerec.histories import history_parts
from aerec.models.budget import score_rows
from aerec.models.raw_ids import ItemFilter, check_n
from aerec.persistence import open_temp_beside

__all__ = ["FORMATS", "COLUMNS", "export_format", "export_recommendations", "split_users",
           "read_id_list"]

#: Output formats by file suffix.
FORMATS = {".parquet": "parquet", ".csv": "csv"}
#: The columns of an export, in order.
COLUMNS = ("user", "rank", "item", "score")
#: Which users of a run's split :func:`split_users` can select.
USER_SETS = ("all", "train", "validation", "test")


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_recommendations` wrote."""

    path: Path
    users: int
    rows: int


def export_recommendations(
    model: Any,
    users: Interactions,
    path: str | Path,
    n: int = 100,
    *,
    item_filter: ItemFilter | None = None,
    batch_size: int = 1000,
    on_batch: Callable[[int], None] | None = None,
) -> ExportSummary:
    """Write the top-``n`` items of every user in ``users`` to ``path`` (``.parquet`` or ``.csv``).

    Parameters
    ----------
    model : Recommender
        A fitted model.
    users : Interactions
        The users (rows, in order) and their histories, on the model's item columns; each
        user's history is excluded from their recommendations.
    path : str or Path
        The output file; its suffix picks the format. Its folder must exist.
    n : int
        Items per user. A user with fewer than ``n`` items left to recommend gets fewer rows.
    item_filter : ItemFilter, optional
        Items never recommended (see :func:`aerec.models.raw_ids.item_filter`).
    batch_size : int
        Users scored and written together; memory grows with ``batch_size * n_items``.
    on_batch : callable, optional
        Called with the number of users of each batch once it is written (a progress bar).

    Returns
    -------
    ExportSummary

    Raises
    ------
    ConfigError
        For an unknown suffix, ``n`` or ``batch_size`` below 1, or Parquet without pyarrow.
    OSError
        If the file cannot be written (naming ``path``); nothing is left behind.
    """
    path = Path(path)
    n = check_n(n)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not np.array_equal(np.asarray(users.item_ids, str), np.asarray(model.item_ids_, str)):
        raise DataError("the users' item columns are not the model's items, in its order")
    # Opened before any scoring: an unwritable path fails at once, not after an hour of work.
    sink = _open_sink(path, model.item_ids_)
    rows = 0
    user_ids = np.asarray(users.user_ids, str)
    try:
        # Batch k is written by a second thread while batch k + 1 is scored (torch and Arrow
        # release the GIL), so writing costs little wall time; one batch waits at most, so
        # memory stays bounded. Leaving the pool waits for a write in flight before abort().
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = None
            batch_size = score_rows(model.n_items_, batch_size)  # bounded at any catalogue
            for start in range(0, users.n_users, batch_size):
                stop = min(start + batch_size, users.n_users)
                ids, scores = model.recommend_filtered(users.matrix[start:stop], n, item_filter)
                if pending is not None:
                    rows += _finish(pending, on_batch)
                pending = pool.submit(sink.write, user_ids[start:stop], ids, scores)
            if pending is not None:
                rows += _finish(pending, on_batch)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    return ExportSummary(path, users.n_users, rows)


def _finish(pending: Future, on_batch: Callable[[int], None] | None) -> int:
    """Wait for one batch's write; report its users; return its rows."""
    rows, n_users = pending.result()
    if on_batch is not None:
        on_batch(n_users)
    return rows


def split_users(split: Split, which: str = "all") -> Interactions:
    """Users of a run's split, each with the history ``aerec recommend --user`` uses for them.

    That history (see :func:`aerec.histories.known_user_history`) is everything the run holds
    about the user except the test targets: a training user's row, a validation user's fold-in
    and targets, a test user's fold-in; on splits where the same users are in several parts, the
    union. Built for all users at once, with sparse operations, not one user at a time.

    Parameters
    ----------
    split : Split
    which : {"all", "train", "validation", "test"}
        The users of that part (``all``: every user, training users first, then validation and
        test users not seen before).

    Returns
    -------
    Interactions
        One row per user, on the training items, with the item titles.
    """
    if which not in USER_SETS:
        raise ConfigError(f"unknown user set {which!r}; valid: {', '.join(USER_SETS)}")
    chosen = {"all": (split.train, split.validation.fold_in, split.test.fold_in),
              "train": (split.train,), "validation": (split.validation.fold_in,),
              "test": (split.test.fold_in,)}[which]
    user_ids = np.asarray(list(dict.fromkeys(u for part in chosen for u in part.user_ids.tolist())),
                          dtype=str)
    index = {u: k for k, u in enumerate(user_ids.tolist())}
    rows, cols, values, ranks = [], [], [], []
    # The parts in known_user_history's order: where two hold the same (user, item), the first wins.
    for rank, part in enumerate(history_parts(split)):
        target = np.array([index.get(u, -1) for u in part.user_ids.tolist()], dtype=np.int64)
        coo = part.matrix.tocoo()
        row = target[coo.row]
        keep = row >= 0
        rows.append(row[keep])
        cols.append(coo.col[keep].astype(np.int64))
        values.append(coo.data[keep])
        ranks.append(np.full(int(keep.sum()), rank, np.int8))
    rows, cols, values, ranks = (np.concatenate(x) for x in (rows, cols, values, ranks))
    order = np.lexsort((ranks, cols, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    first = np.r_[True, (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])]
    train = split.train
    matrix = sp.csr_matrix((values[first].astype(np.float32), (rows[first], cols[first])),
                           shape=(len(user_ids), train.n_items))
    matrix.sort_indices()
    return Interactions(matrix, user_ids, train.item_ids, None, train.explicit, train.item_titles)


def read_id_list(path: str | Path) -> list[str]:
    """Raw ids from a text file, one a line; blank lines and lines starting with ``#`` skipped.

    The file must be a regular UTF-8 text file of at most
    :data:`~aerec.input_files.MAX_ID_LIST_BYTES` (``/dev/zero`` or a binary file is a
    :class:`DataError`, not an endless read).
    """
    from aerec.input_files import read_text_lines

    return [s for s in (line.strip() for line in read_text_lines(path))
            if s and not s.startswith("#")]


# -- sinks ----------------------------------------------------------------------------------------
def export_format(path: str | Path) -> str:
    """``"parquet"`` or ``"csv"``, from ``path``'s suffix; a :class:`ConfigError` for another."""
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"{path}: cannot tell the format from the suffix; use "
                          f"{' or '.join(FORMATS)}")
    return kind


def _open_sink(path: Path, item_ids: np.ndarray) -> _Sink:
    kind = export_format(path)
    return (_ParquetSink if kind == "parquet" else _CsvSink)(path, item_ids)


class _Sink:
    """Rows of one export, written to a temporary file renamed over ``path`` on commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # The mode of the file replaced, or the umask's for a new one (an export is meant to be
        # read by others).
        fd, self.tmp = open_temp_beside(path)
        os.close(fd)
        try:
            self._open()
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise

    def _open(self) -> None:
        raise NotImplementedError

    def write(self, users: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> tuple[int, int]:
        """Write one batch (``users[b]`` gets ``ids[b]`` with ``scores[b]``); rows and users."""
        k = ids.shape[1]
        user_of_row = np.repeat(np.arange(len(users)), k)
        ranks = np.tile(np.arange(1, k + 1, dtype=np.int32), len(users))
        ids, scores = ids.ravel(), scores.ravel().astype(np.float32)
        keep = ~np.isneginf(scores)  # slots left when fewer than n items were available
        if not keep.all():
            user_of_row, ranks, ids, scores = user_of_row[keep], ranks[keep], ids[keep], scores[keep]
        self._write(users, user_of_row, ranks, ids, scores)
        return len(ids), len(users)

    def _write(self, users, user_of_row, ranks, ids, scores) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        self._close()
        with open(self.tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self._close()
        finally:
            self.tmp.unlink(missing_ok=True)


class _ArrowRows:
    """Batches of rows as Arrow tables; ids are mapped to strings by Arrow's ``take`` in C++, so
    no Python string is made per row (the cost that dominates writing with pandas)."""

    def __init__(self, item_ids: np.ndarray) -> None:
        import pyarrow as pa

        self.pa = pa
        self.schema = pa.schema([("user", pa.string()), ("rank", pa.int32()),
                                 ("item", pa.string()), ("score", pa.float32())])
        self.items = pa.array(np.asarray(item_ids, str))

    def table(self, users, user_of_row, ranks, ids, scores):
        pa = self.pa
        return pa.Table.from_arrays([
            pa.array(users).take(pa.array(user_of_row)), pa.array(ranks),
            self.items.take(pa.array(ids)), pa.array(scores),
        ], schema=self.schema)


class _ParquetSink(_Sink):
    def __init__(self, path: Path, item_ids: np.ndarray) -> None:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError("writing Parquet needs pyarrow: pip install 'aerec[parquet]', "
                              "or write .csv") from None
        self.pq, self.rows, self.writer = pq, _ArrowRows(item_ids), None
        super().__init__(path)

    def _open(self) -> None:
        self.writer = self.pq.ParquetWriter(str(self.tmp), self.rows.schema)

    def _write(self, users, user_of_row, ranks, ids, scores) -> None:
        table = self.rows.table(users, user_of_row, ranks, ids, scores)
        self.writer.write_table(table, row_group_size=max(len(table), 1))

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _CsvSink(_Sink):
    """CSV with Arrow's writer when pyarrow is installed (about ten times faster), else pandas.

    Values are quoted only in a batch where an id holds a comma, a quote or a line break; readers
    take quoted and bare values alike.
    """

    def __init__(self, path: Path, item_ids: np.ndarray) -> None:
        try:
            import pyarrow.csv as pacsv
        except ImportError:
            pacsv = None
        self.pacsv = pacsv
        self.rows = _ArrowRows(item_ids) if pacsv is not None else None
        self.items = np.asarray(item_ids, dtype=object)
        self.items_plain = _plain(self.items)
        super().__init__(path)

    def _open(self) -> None:
        self.fh = open(self.tmp, "wb")
        self.fh.write((",".join(COLUMNS) + "\n").encode())

    def _write(self, users, user_of_row, ranks, ids, scores) -> None:
        plain = self.items_plain and _plain(users)
        if self.pacsv is not None:
            options = self.pacsv.WriteOptions(include_header=False,
                                              quoting_style="none" if plain else "needed")
            self.pacsv.write_csv(self.rows.table(users, user_of_row, ranks, ids, scores), self.fh,
                                 options)
            return
        import pandas as pd

        frame = pd.DataFrame({"user": np.asarray(users, dtype=object)[user_of_row], "rank": ranks,
                              "item": self.items[ids], "score": scores})
        self.fh.write(frame.to_csv(header=False, index=False, lineterminator="\n").encode())

    def _close(self) -> None:
        if not self.fh.closed:
            self.fh.close()


_NEEDS_QUOTES = re.compile(r'[",\r\n]')


def _plain(ids: np.ndarray) -> bool:
    """Whether no id needs quoting in CSV."""
    return not any(_NEEDS_QUOTES.search(str(i)) for i in ids)
