"""The Netflix Prize reader: both layouts on tiny files, dates, and errors that name the line."""

from __future__ import annotations

import numpy as np
import pytest

from aerec.data.explicit_splits import time_split
from aerec.data.netflix import netflix_files, read_netflix, read_netflix_titles
from aerec.data.preprocess import DuplicateInteractionsWarning
from aerec.errors import DataError, ParseError

MOVIE_1 = "1:\n1488844,3,2005-09-06\n822109,5,2005-05-13\n885013,4,2005-10-19\n"
MOVIE_2 = "2:\n2059652,4,2005-09-05\n1488844,1,2005-12-02\n"


@pytest.fixture
def original(tmp_path):
    folder = tmp_path / "nf" / "training_set"
    folder.mkdir(parents=True)
    (folder / "mv_0000001.txt").write_text(MOVIE_1)
    (folder / "mv_0000002.txt").write_text(MOVIE_2)
    return tmp_path / "nf"


@pytest.fixture
def combined(tmp_path):
    folder = tmp_path / "kaggle"
    folder.mkdir()
    (folder / "combined_data_1.txt").write_text(MOVIE_1)
    # CRLF line ends and a blank line, as files edited on other systems have
    (folder / "combined_data_2.txt").write_text(MOVIE_2.replace("\n", "\r\n") + "\n")
    return folder


def _as_dict(data):
    rows, cols, values, ts = data.to_arrays()
    return {(data.user_ids[r], data.item_ids[c]): (v, t) for r, c, v, t in zip(rows, cols, values, ts)}


def test_original_layout(original):
    data = read_netflix(original)
    assert data.explicit and data.nnz == 5
    assert list(data.user_ids) == ["822109", "885013", "1488844", "2059652"]
    assert list(data.item_ids) == ["1", "2"]
    got = _as_dict(data)
    assert got[("1488844", "1")] == (3.0, 1125964800)  # 2005-09-06 00:00 UTC
    assert got[("1488844", "2")] == (1.0, 1133481600)  # 2005-12-02
    assert got[("822109", "1")][0] == 5.0


def test_both_layouts_read_the_same(original, combined):
    a, b = read_netflix(original), read_netflix(combined)
    assert _as_dict(a) == _as_dict(b)
    assert np.array_equal(a.user_ids, b.user_ids) and np.array_equal(a.item_ids, b.item_ids)
    # one file or a folder of mv_ files directly
    assert _as_dict(read_netflix(original / "training_set")) == _as_dict(a)
    assert read_netflix(combined / "combined_data_1.txt").nnz == 3


def test_the_papers_time_split_runs_on_it(original):
    split = time_split(read_netflix(original), "2005-12-01", validation_fraction=0.25)
    assert split.test.targets.nnz == 1  # the rating of 2005-12-02
    assert split.test.targets.user_ids[split.test.targets.matrix.nonzero()[0][0]] == "1488844"


def _bad(tmp_path, text, name="combined_data_1.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, line, field, message", [
    ("1:\n5,3,2005-01-01\n6,7,2005-01-01\n", 3, "rating", "from 1 to 5"),
    ("1:\n5,3,2005-01-01\n\nx6,2,2005-01-01\n", 4, "customer", "non-negative integer"),
    ("1:\n5,3,2005-13-01\n", 2, "date", "no such date"),
    ("1:\n5,3,05/01/2005\n", 2, "date", "YYYY-MM-DD"),
    ("1:\n5,3\n", 2, None, "expected 3 fields"),
    ("1:\n5,3,2005-01-01,9\n", 2, None, "expected 3 fields"),
    ("5,3,2005-01-01\n1:\n", 1, None, "before any 'MovieID:'"),
    ("1:\n5,3,2005-01-01\nM2:\n", 3, "movie", "MovieID:"),
])
def test_malformed_lines_are_named(tmp_path, text, line, field, message):
    path = _bad(tmp_path, text)
    with pytest.raises(ParseError, match=message) as info:
        read_netflix(path)
    assert info.value.path == str(path) and info.value.line == line and info.value.field == field


def test_an_mv_file_holds_one_movie(tmp_path):
    path = _bad(tmp_path, MOVIE_1 + MOVIE_2, name="mv_0000001.txt")
    with pytest.raises(ParseError, match="second 'MovieID:'") as info:
        read_netflix(path)
    assert info.value.line == 5


def test_missing_files_and_duplicates(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_netflix(tmp_path / "nowhere")
    with pytest.raises(DataError, match="combined_data"):
        netflix_files(tmp_path)
    path = _bad(tmp_path, "1:\n5,3,2005-01-01\n5,4,2005-02-01\n")
    with pytest.warns(DuplicateInteractionsWarning):
        data = read_netflix(path)
    assert data.nnz == 1 and data.matrix.data[0] == 4.0  # the later rating wins


def test_titles_kaggle_file_and_errors(tmp_path):
    assert read_netflix_titles(tmp_path) == {}  # titles are optional
    (tmp_path / "movie_titles.csv").write_text(
        "1,2003,Dinosaur Planet\r\n\r\n17770,2003,Alien Hunter\r\n")
    assert read_netflix_titles(tmp_path) == {"1": "Dinosaur Planet (2003)",
                                             "17770": "Alien Hunter (2003)"}
    (tmp_path / "movie_titles.csv").write_text("1,2003,Dinosaur Planet\nx2,2004,Oops\n")
    with pytest.raises(ParseError, match="MovieID,YearOfRelease,Title") as info:
        read_netflix_titles(tmp_path)
    assert info.value.path == str(tmp_path / "movie_titles.csv") and info.value.line == 2
