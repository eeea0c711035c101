"""Readers on small real files: right values, and bad lines reported by file, line and field."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aerec.data import readers
from aerec.data.preprocess import DuplicateInteractionsWarning
from aerec.data.readers import (
    read_file,
    read_item_titles,
    read_lightgcn,
    read_ml100k,
    read_ratings_csv,
    read_ratings_dat,
    read_table,
)
from aerec.errors import ConfigError, DataError, EmptyDataError, ParseError
from aerec.extras import MissingExtraError

CSV_HEADER = "userId,movieId,rating,timestamp\n"


def _write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _parse_error(reader, path: Path, **kwargs) -> ParseError:
    with pytest.raises(ParseError) as info:
        reader(path, **kwargs)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    return info.value


# -- good files ----------------------------------------------------------------------------------
def test_read_ml100k_values_ids_and_timestamps(tmp_path):
    path = _write(tmp_path, "u.data", "2\t10\t3\t300\n10\t10\t5\t100\n2\t7\t4\t200\n")
    data = read_ml100k(path)
    assert data.explicit
    # Integer ids are ordered numerically: "2" before "10".
    np.testing.assert_array_equal(data.user_ids, ["2", "10"])
    np.testing.assert_array_equal(data.item_ids, ["7", "10"])
    np.testing.assert_array_equal(data.matrix.toarray(), [[4, 3], [0, 5]])
    np.testing.assert_array_equal(data.timestamps, [200, 300, 100])


def test_read_ratings_dat(tmp_path):
    path = _write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n"
                                           "2::1193::4.5::978298413\n")
    data = read_ratings_dat(path)
    np.testing.assert_array_equal(data.item_ids, ["661", "1193"])
    np.testing.assert_array_equal(data.matrix.toarray(), [[3, 5], [0, 4.5]])
    np.testing.assert_array_equal(data.timestamps, [978302109, 978300760, 978298413])


def test_read_ratings_csv_with_crlf_and_blank_lines(tmp_path):
    path = _write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\r\n1,31,2.5,1260759144"
                                           "\r\n\r\n1,1029,3.0,1260759179\r\n")
    data = read_ratings_csv(path)
    np.testing.assert_array_equal(data.matrix.toarray(), [[2.5, 3.0]])
    np.testing.assert_array_equal(data.timestamps, [1260759144, 1260759179])


def test_good_files_take_the_fast_path(tmp_path, monkeypatch):
    def fail(spec):
        raise AssertionError("the line scan ran on a good file")

    monkeypatch.setattr(readers, "_scan_for_bad_line", fail)
    read_ml100k(_write(tmp_path, "u.data", "1\t2\t3\t4\n"))
    read_ratings_dat(_write(tmp_path, "r.dat", "1::2::3::4\n"))
    read_ratings_csv(_write(tmp_path, "r.csv", CSV_HEADER + "1,2,3,4\n"))


def test_read_table_csv_string_ids_and_quoting(tmp_path):
    path = _write(tmp_path, "t.csv", 'item,score,who\nbook,1.5,"doe, jane"\nfilm,2,bob\n')
    data = read_table(path, user_col="who", item_col="item", rating_col="score")
    np.testing.assert_array_equal(data.user_ids, ["bob", "doe, jane"])
    np.testing.assert_array_equal(data.matrix.toarray(), [[0, 2], [1.5, 0]])
    assert data.timestamps is None


def test_read_table_tsv_implicit(tmp_path):
    path = _write(tmp_path, "t.tsv", "u\ti\tt\nb\tx\t5\na\tx\t6\na\ty\t7\n")
    data = read_table(path, user_col="u", item_col="i", timestamp_col="t")
    assert not data.explicit
    np.testing.assert_array_equal(data.user_ids, ["a", "b"])
    np.testing.assert_array_equal(data.matrix.toarray(), [[1, 1], [1, 0]])
    np.testing.assert_array_equal(data.timestamps, [6, 7, 5])


def test_read_table_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "t.parquet"
    pd.DataFrame({
        "user": [3, 1, 3], "item": ["a", "b", "b"], "stars": [4.0, 2.0, 5.0],
        "when": pd.to_datetime([10, 20, 30], unit="s", utc=True),
    }).to_parquet(path)
    data = read_table(path, user_col="user", item_col="item", rating_col="stars",
                      timestamp_col="when")
    np.testing.assert_array_equal(data.user_ids, ["1", "3"])
    np.testing.assert_array_equal(data.matrix.toarray(), [[0, 2], [4, 5]])
    np.testing.assert_array_equal(data.timestamps, [20, 10, 30])


def test_read_table_parquet_integral_float_ids_and_bad_values(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "t.parquet"
    pd.DataFrame({"u": [2.0, 10.0], "i": [1, 1], "r": [1.0, None]}).to_parquet(path)
    data = read_table(path, user_col="u", item_col="i")
    np.testing.assert_array_equal(data.user_ids, ["2", "10"])
    with pytest.raises(ParseError, match="missing rating in row 2") as info:
        read_table(path, user_col="u", item_col="i", rating_col="r")
    assert info.value.field == "r"


def test_read_table_parquet_without_pyarrow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'aerec\[parquet\]'"):
        read_table(tmp_path / "t.parquet", user_col="u", item_col="i")


def test_read_table_format_errors(tmp_path):
    with pytest.raises(ConfigError, match="file_format"):
        read_table(tmp_path / "t.txt", user_col="u", item_col="i")
    with pytest.raises(ConfigError, match="one character"):
        read_table(_write(tmp_path, "t.csv", "u,i\n"), user_col="u", item_col="i", sep="::")


# -- duplicates ----------------------------------------------------------------------------------
def test_duplicate_pairs_keep_the_latest_timestamp(tmp_path):
    path = _write(tmp_path, "u.data", "1\t1\t5\t300\n1\t2\t3\t100\n1\t1\t2\t200\n")
    with pytest.warns(DuplicateInteractionsWarning, match=r"1 duplicate .*u\.data"):
        data = read_ml100k(path)
    np.testing.assert_array_equal(data.matrix.toarray(), [[5, 3]])
    np.testing.assert_array_equal(data.timestamps, [300, 100])


def test_duplicate_pairs_without_timestamps_keep_the_last_line(tmp_path):
    path = _write(tmp_path, "t.csv", "u,i,r\na,x,1\na,x,2\nb,x,3\na,x,4\n")
    with pytest.warns(DuplicateInteractionsWarning, match=r"2 duplicate .*t\.csv"):
        data = read_table(path, user_col="u", item_col="i", rating_col="r")
    np.testing.assert_array_equal(data.matrix.toarray(), [[4], [3]])


# -- bad lines -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "line", "field", "message"), [
    ("1\t2\t3\t4\n1\t3\t3\t4\n1\t4\t3\n", 3, None, "expected 4 fields"),
    ("1\t2\t3\t4\t9\n1\t3\t3\t4\n", 1, None, "found 5"),
    ("1\t2\t3\t4\n1\t3\t3\t4\t9\n", 2, None, "found 5"),
    ("1\t2\t3\t4\n1\t3\tgood\t4\n", 2, "rating", "'good' is not a number"),
    ("1\t2\t3\t4\n\n1\t3\t\t4\n", 3, "rating", "missing rating"),
    ("1\t2\tinf\t4\n", 1, "rating", "'inf' is not a number"),
    ("1\t2\t3\t4\n1\t3\t3\t12.5\n", 2, "timestamp", "'12.5' is not an integer"),
    ("1\t2\t3\t4\nx\t3\t3\t4\n", 2, "user", "user id 'x' is not an integer"),
])
def test_ml100k_bad_lines(tmp_path, text, line, field, message):
    error = _parse_error(read_ml100k, _write(tmp_path, "u.data", text))
    assert (error.line, error.field) == (line, field)
    assert message in error.message
    assert f"line {line}" in str(error)


# Values beyond int64 (and ratings beyond float64) are refused by line and field in every reader,
# never an OverflowError; int64's own limits are still read.
BIG = "99999999999999999999999"
INT64_MAX = str(2**63 - 1)


@pytest.mark.parametrize(("name", "text", "line", "field", "message"), [
    ("u.data", f"1\t2\t3\t4\n{BIG}\t2\t3\t5\n", 2, "user", f"user id {BIG} is beyond"),
    ("u.data", f"1\t{2**64 - 1}\t3\t4\n", 1, "item", "item id 18446744073709551615 is beyond"),
    ("u.data", f"1\t2\t3\t-{BIG}\n", 1, "timestamp", f"timestamp -{BIG} is beyond"),
    ("u.data", f"1\t2\t3\t{2**63}\n", 1, "timestamp", f"timestamp {2**63} is beyond"),
    ("u.data", f"1\t2\t3\t{BIG}.0\n", 1, "timestamp", f"timestamp {BIG}.0 is beyond"),
    ("u.data", "1\t2\t1e999\t4\n", 1, "rating", "rating 1e999 is too large"),
    ("u.data", f"1\t2\t{'9' * 400}\t4\n", 1, "rating", "is too large (not finite)"),
    ("ratings.dat", f"1::2::3::4\n1::{BIG}::3::5\n", 2, "item", f"item id {BIG} is beyond"),
    ("ratings.csv", f"{CSV_HEADER}1,2,3,4\n3,2,3,{BIG}\n", 3, "timestamp", "timestamp 9999"),
    ("ratings.csv", f"{CSV_HEADER}{BIG},2,3,4\n", 2, "userId", f"user id {BIG} is beyond"),
    ("mine.csv", f"user,item,ts\na,b,1\nc,d,{BIG}\n", 3, "ts", f"timestamp {BIG} is beyond"),
    ("mine.tsv", f"uid\tiid\ttimestamp\nx\ty\t-{BIG}\n", 2, "timestamp", "is beyond"),
])
def test_values_beyond_int64_name_file_line_and_field(tmp_path, name, text, line, field, message):
    path = _write(tmp_path, name, text)
    error = _parse_error(read_file, path)
    assert (error.line, error.field) == (line, field)
    assert message in error.message
    assert "\n" not in str(error)


def test_int64_limits_and_big_string_ids_are_read(tmp_path):
    data = read_ml100k(_write(tmp_path, "u.data", f"{INT64_MAX}\t2\t3\t{INT64_MAX}\n"
                                                  f"1\t2\t3\t-{INT64_MAX}\n"))
    np.testing.assert_array_equal(data.user_ids, ["1", INT64_MAX])
    np.testing.assert_array_equal(data.timestamps, [-(2**63 - 1), 2**63 - 1])
    # Ids of a generic table are strings: a long one is just a long name.
    data = read_file(_write(tmp_path, "t.csv", f"user,item\n{BIG},1\n2,1\n"))
    np.testing.assert_array_equal(data.user_ids, ["2", BIG])


def test_parquet_timestamps_beyond_int64(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "t.parquet"
    pd.DataFrame({"user": [1, 2], "item": [1, 1],
                  "ts": np.array([1, 2**64 - 1], np.uint64)}).to_parquet(path)
    error = _parse_error(read_file, path)
    assert error.field == "ts"
    assert "timestamp 18446744073709551615 in row 2 is beyond" in error.message


@pytest.mark.parametrize(("text", "line", "field"), [
    ("1::2::3::4\n1::2::3\n", 2, None),
    ("1::2::3::4\n1::3::3::4::5\n", 2, None),
    ("1::2::3::4\n1::3::3::soon\n", 2, "timestamp"),
    ("1::2::3::4\n1::3::::5\n", 2, "rating"),
])
def test_ratings_dat_bad_lines(tmp_path, text, line, field):
    error = _parse_error(read_ratings_dat, _write(tmp_path, "ratings.dat", text))
    assert (error.line, error.field) == (line, field)


@pytest.mark.parametrize(("body", "line", "field"), [
    ("1,2,3,4\n1,3,NA,5\n", 3, "rating"),   # the header is line 1
    ("1,2,3,4\n1,3,3\n", 3, None),
    ("1,2,3,4\n1,3,3,5,6\n", 3, None),
    ("1,2,3,4.5\n", 2, "timestamp"),
    ("1,x,3,4\n", 2, "movieId"),
])
def test_ratings_csv_bad_lines_count_the_header(tmp_path, body, line, field):
    error = _parse_error(read_ratings_csv, _write(tmp_path, "ratings.csv", CSV_HEADER + body))
    assert (error.line, error.field) == (line, field)


def test_read_table_bad_line_after_quoted_field(tmp_path):
    path = _write(tmp_path, "t.csv", 'u,i,r\n"a,b",x,1\nc,y,\n')
    error = _parse_error(read_table, path, user_col="u", item_col="i", rating_col="r")
    assert (error.line, error.field) == (3, "r")


def test_bad_encoding_names_the_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"u,i\na,x\nb,\xff\n")
    error = _parse_error(read_table, path, user_col="u", item_col="i")
    assert error.line == 3
    # A bad value before the bad byte is still the first error reported.
    path.write_bytes(b"u,i,r\na,x,no\nb,\xff,1\n")
    error = _parse_error(read_table, path, user_col="u", item_col="i", rating_col="r")
    assert (error.line, error.field) == (2, "r")


def test_unknown_column_names_file_field_and_columns(tmp_path):
    path = _write(tmp_path, "t.csv", "user,item,stars\n1,2,3\n")
    with pytest.raises(DataError) as info:
        read_table(path, user_col="user", item_col="item", rating_col="rating")
    assert info.value.field == "rating"
    assert info.value.path == str(path)
    assert "'user', 'item', 'stars'" in str(info.value)
    with pytest.raises(DataError, match="movieId"):
        read_ratings_csv(_write(tmp_path, "ratings.csv", "userId,itemId,rating,timestamp\n"))


@pytest.mark.parametrize(("reader", "name", "text"), [
    (read_ml100k, "u.data", ""),
    (read_ml100k, "u.data", "\n\n"),
    (read_ratings_dat, "ratings.dat", ""),
    (read_ratings_csv, "ratings.csv", CSV_HEADER),
    (read_ratings_csv, "ratings.csv", ""),
    (read_lightgcn, "train.txt", "\n"),
])
def test_files_without_data(tmp_path, reader, name, text):
    path = _write(tmp_path, name, text)
    with pytest.raises(EmptyDataError) as info:
        reader(path)
    assert info.value.path == str(path)


# -- LightGCN ------------------------------------------------------------------------------------
def test_read_lightgcn_keeps_users_without_items(tmp_path):
    data = read_lightgcn(_write(tmp_path, "train.txt", "0 3 1\n2\n10 1\n"))
    assert not data.explicit and data.timestamps is None
    np.testing.assert_array_equal(data.user_ids, ["0", "2", "10"])
    np.testing.assert_array_equal(data.item_ids, ["1", "3"])
    np.testing.assert_array_equal(data.matrix.toarray(), [[1, 1], [0, 0], [1, 0]])


def test_read_lightgcn_test_split_in_the_train_vocabulary(tmp_path):
    train = read_lightgcn(_write(tmp_path, "train.txt", "0 0 1\n1 1 2\n2 0\n"))
    test = read_lightgcn(_write(tmp_path, "test.txt", "0 2\n1\n2 1\n"),
                         user_ids=train.user_ids, item_ids=train.item_ids)
    np.testing.assert_array_equal(test.user_ids, train.user_ids)
    np.testing.assert_array_equal(test.item_ids, train.item_ids)
    np.testing.assert_array_equal(test.matrix.toarray(), [[0, 0, 1], [0, 0, 0], [0, 1, 0]])
    with pytest.raises(DataError) as info:
        read_lightgcn(_write(tmp_path, "bad.txt", "0 1\n1 2 7\n"),
                      user_ids=train.user_ids, item_ids=train.item_ids)
    assert (info.value.line, info.value.field) == (2, "item")
    assert "'7'" in str(info.value)


def test_read_lightgcn_bad_token_and_duplicates(tmp_path):
    error = _parse_error(read_lightgcn, _write(tmp_path, "train.txt", "0 1\n1 2 x3\n"))
    assert (error.line, error.field) == (2, "item")
    with pytest.warns(DuplicateInteractionsWarning, match="1 duplicate"):
        data = read_lightgcn(_write(tmp_path, "dup.txt", "0 1 1 2\n"))
    np.testing.assert_array_equal(data.matrix.toarray(), [[1, 1]])


# -- read_file -----------------------------------------------------------------------------------
def test_read_file_guesses_the_format_from_the_name(tmp_path, monkeypatch):
    called = []
    for name in ("ml-100k", "dat", "ratings-csv", "csv", "lightgcn"):
        monkeypatch.setitem(readers.FILE_FORMATS, name,
                            lambda path, _n=name, **kw: called.append(_n))
    read_file(_write(tmp_path, "u1.base", ""))
    read_file(_write(tmp_path, "ratings.dat", ""))
    read_file(_write(tmp_path, "ratings.csv", CSV_HEADER))
    read_file(_write(tmp_path, "other.csv", "userId,movieId\n"))
    read_file(_write(tmp_path, "train.txt", ""))
    assert called == ["ml-100k", "dat", "ratings-csv", "csv", "lightgcn"]


def test_read_file_tables_default_to_movielens_columns(tmp_path):
    data = read_file(_write(tmp_path, "synth.tsv", "userId\tmovieId\n1\t5\n2\t5\n"))
    assert not data.explicit and data.nnz == 2
    path = _write(tmp_path, "mine.csv", "who,what,stars\na,x,4\n")
    data = read_file(path, "csv", user_col="who", item_col="what", rating_col="stars")
    assert data.explicit and data.nnz == 1
    with pytest.raises(DataError, match="no user column: .*--user-col.*'who', 'what', 'stars'"):
        read_file(path)


def test_read_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="valid formats: auto, ml-100k"):
        read_file(tmp_path / "x.csv", "excel")
    with pytest.raises(DataError, match="file not found"):
        read_file(tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match="--format"):
        read_file(_write(tmp_path, "ratings.json", "{}"))
    with pytest.raises(ConfigError, match="user_col do not apply to the ml-100k"):
        read_file(_write(tmp_path, "u.data", "1\t2\t3\t4\n"), user_col="u")


# -- titles --------------------------------------------------------------------------------------
def test_titles_of_each_format(tmp_path):
    ml100k = tmp_path / "ml-100k"
    ml100k.mkdir()
    _write(ml100k, "u.item", "1|Toy Story (1995)|01-Jan-1995||http://x|0|1\n"
                             "2|Señor (1996)|01-Jan-1996||http://y|1|0\n", encoding="latin-1")
    assert read_item_titles(ml100k, "ml-100k") == {"1": "Toy Story (1995)", "2": "Señor (1996)"}
    ml1m = tmp_path / "ml-1m"
    ml1m.mkdir()
    _write(ml1m, "movies.dat", "1::Toy Story (1995)::Animation\n3::Café (1999)::Drama\n",
           encoding="latin-1")
    assert read_item_titles(ml1m, "ml-1m") == {"1": "Toy Story (1995)", "3": "Café (1999)"}
    ml10m = tmp_path / "ml-10m"
    ml10m.mkdir()
    # Declared utf-8; a line that is not valid utf-8 is read as latin-1 instead of failing.
    _write(ml10m, "movies.dat", "1::Amélie (2001)::Comedy\n", encoding="latin-1")
    assert read_item_titles(ml10m, "ml-10m") == {"1": "Amélie (2001)"}
    ml20m = tmp_path / "ml-20m"
    ml20m.mkdir()
    _write(ml20m, "movies.csv", 'movieId,title,genres\n1,Toy Story (1995),Comedy\n'
                                '11,"American President, The (1995)",Drama|Romance\n')
    assert read_item_titles(ml20m, "ml-20m") == {
        "1": "Toy Story (1995)", "11": "American President, The (1995)"}


def test_titles_errors(tmp_path):
    with pytest.raises(ConfigError, match="ml-100k"):
        read_item_titles(tmp_path, "netflix")
    (tmp_path / "u.item").write_text("1|Toy Story (1995)\n2\n")
    with pytest.raises(ParseError) as info:
        read_item_titles(tmp_path, "ml-100k")
    assert info.value.line == 2


def test_real_ml100k_files(shared_data_dir):
    folder = shared_data_dir / "ml-100k"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        base, test = read_ml100k(folder / "u1.base"), read_ml100k(folder / "u1.test")
    assert base.nnz + test.nnz == 100_000
    titles = read_item_titles(folder, "ml-100k")
    assert len(titles) == 1682 and titles["1"] == "Toy Story (1995)"
