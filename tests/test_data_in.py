"""Data in: DataFrames, column names found by their common names, `fit(df)`, the top-level API."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import aerec
from aerec.data.columns import COLUMN_ALIASES, detect_columns
from aerec.data.interactions import Interactions, as_interactions
from aerec.data.preprocess import DuplicateInteractionsWarning
from aerec.data.readers import read_file, resolve_data_argument
from aerec.errors import ConfigError, DataError, EmptyDataError, ParseError

DOCS = Path(__file__).resolve().parents[1] / "docs"

# (user, item) = (a, x) on three rows: at times 20, 10 and 20 (a tie with the first, later row).
# (b, x) once, (a, y) once.
FRAME = pd.DataFrame({
    "user": ["a", "a", "b", "a", "a"],
    "item": ["x", "x", "x", "y", "x"],
    "rating": [1.0, 2.0, 4.0, 5.0, 3.0],
    "timestamp": [20, 10, 7, 5, 20],
})


def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


# -- duplicates ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("policy", "expected"), [
    # last: the latest by time; the tie at 20 goes to the later row (rating 3)
    ("last", [[3, 5], [4, 0]]),
    ("sum", [[6, 5], [4, 0]]),
    ("max", [[3, 5], [4, 0]]),
])
def test_from_pandas_duplicates_policies(policy, expected):
    data = Interactions.from_pandas(FRAME, duplicates=policy)
    np.testing.assert_array_equal(data.user_ids, ["a", "b"])
    np.testing.assert_array_equal(data.item_ids, ["x", "y"])
    np.testing.assert_array_equal(data.matrix.toarray(), expected)
    # CSR order (a, x), (a, y), (b, x); a repeated pair keeps its latest timestamp
    np.testing.assert_array_equal(data.timestamps, [20, 5, 7])
    assert data.explicit


def test_from_pandas_max_is_not_last():
    frame = FRAME.assign(rating=[1.0, 4.0, 4.0, 5.0, 3.0])  # the best rating of (a, x) is older
    assert Interactions.from_pandas(frame, duplicates="max").matrix[0, 0] == 4
    assert Interactions.from_pandas(frame, duplicates="last").matrix[0, 0] == 3


def test_from_pandas_last_without_timestamps_keeps_the_last_row():
    data = Interactions.from_pandas(FRAME.drop(columns="timestamp"))
    np.testing.assert_array_equal(data.matrix.toarray(), [[3, 5], [4, 0]])
    data = Interactions.from_pandas(FRAME.drop(columns="timestamp").iloc[:2])
    np.testing.assert_array_equal(data.matrix.toarray(), [[2]])  # rows 1 and 2: the second
    assert data.timestamps is None


def test_from_pandas_sum_of_an_implicit_log_counts_the_rows():
    data = Interactions.from_pandas(FRAME[["user", "item"]], duplicates="sum")
    assert not data.explicit
    np.testing.assert_array_equal(data.matrix.toarray(), [[3, 1], [1, 0]])


def test_from_pandas_duplicates_error_names_the_pair():
    with pytest.raises(DataError, match=r"\('a', 'x'\) occurs more than once \(2 repeats") as info:
        Interactions.from_pandas(FRAME, duplicates="error")
    _one_line(info)
    with pytest.raises(ConfigError, match="one of last, sum, max, error"):
        Interactions.from_pandas(FRAME, duplicates="first")


def test_from_arrays_keeps_refusing_duplicates_by_default():
    with pytest.raises(DataError, match="duplicates='last', 'sum' or 'max'"):
        Interactions.from_arrays(np.array([1, 1]), np.array([2, 2]))
    data = Interactions.from_arrays(np.array([1, 1]), np.array([2, 2]), duplicates="sum")
    np.testing.assert_array_equal(data.matrix.toarray(), [[2]])


def test_a_frame_and_its_csv_file_give_the_same_data(tmp_path):
    path = tmp_path / "log.csv"
    FRAME.to_csv(path, index=False)
    with pytest.warns(DuplicateInteractionsWarning, match="2 duplicate"):
        from_file = read_file(path)
    from_frame = Interactions.from_pandas(pd.read_csv(path))
    assert (from_file.matrix != from_frame.matrix).nnz == 0
    np.testing.assert_array_equal(from_file.user_ids, from_frame.user_ids)
    np.testing.assert_array_equal(from_file.item_ids, from_frame.item_ids)
    np.testing.assert_array_equal(from_file.timestamps, from_frame.timestamps)


def test_ids_are_strings_sorted_numerically_and_datetimes_are_seconds():
    frame = pd.DataFrame({"uid": [10, 2, 10.0], "iid": ["7", 7, "11"],
                          "ts": pd.to_datetime([1, 2, 3], unit="s", utc=True)})
    data = Interactions.from_pandas(frame)
    np.testing.assert_array_equal(data.user_ids, ["2", "10"])
    np.testing.assert_array_equal(data.item_ids, ["7", "11"])  # 7 and "7" are one item
    np.testing.assert_array_equal(data.matrix.toarray(), [[1, 0], [1, 1]])
    np.testing.assert_array_equal(data.timestamps, [2, 1, 3])
    assert not data.explicit


def test_pyarrow_table_is_read_like_its_frame():
    pa = pytest.importorskip("pyarrow")
    data = Interactions.from_pandas(pa.Table.from_pandas(FRAME), duplicates="sum")
    np.testing.assert_array_equal(data.matrix.toarray(), [[6, 5], [4, 0]])


# -- which column is which -----------------------------------------------------------------------
ALIASES = [(role, name) for role, names in COLUMN_ALIASES.items() for name in names]


@pytest.mark.parametrize(("role", "name"), ALIASES)
def test_every_alias_is_found_in_any_case(role, name):
    others = {"user": "user", "item": "item"}
    for variant in (name, name.upper(), name.lower()):
        columns = [variant] + [c for r, c in others.items() if r != role]
        assert getattr(detect_columns(columns), role) == variant


def test_frame_columns_found_by_alias_and_named_columns_win():
    frame = pd.DataFrame({"UserId": [1, 2], "movieId": [5, 5], "Score": [4.0, 2.0],
                          "TS": [1, 2], "buyer": ["p", "q"]})
    data = Interactions.from_pandas(frame)
    np.testing.assert_array_equal(data.user_ids, ["1", "2"])
    np.testing.assert_array_equal(data.matrix.toarray(), [[4], [2]])
    np.testing.assert_array_equal(data.timestamps, [1, 2])
    named = Interactions.from_pandas(frame, user="buyer")
    np.testing.assert_array_equal(named.user_ids, ["p", "q"])


def test_two_candidates_for_a_role_are_an_error_naming_both():
    frame = pd.DataFrame({"user": [1], "user_id": [2], "item": [3]})
    with pytest.raises(DataError, match="columns 'user' and 'user_id' could both be the user; "
                                        "name one \\(user=\\)") as info:
        Interactions.from_pandas(frame)
    _one_line(info)
    assert Interactions.from_pandas(frame, user="user_id").user_ids.tolist() == ["2"]
    with pytest.raises(DataError, match="'rating' and 'score' could both be the rating"):
        detect_columns(["user", "item", "rating", "score"])


def test_a_column_named_for_two_roles_is_an_error():
    with pytest.raises(DataError, match="'x' is named for both the user and the item"):
        detect_columns(["x", "y"], user="x", item="x")
    with pytest.raises(DataError, match=r"'user' occur more than once"):
        detect_columns(["user", "user", "item"])


def test_csv_with_plain_header_is_read_and_named_columns_still_win(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("user,item,rating\nann,tea,4\nbob,tea,2\nbob,jam,5\n")
    data = read_file(path)
    assert data.explicit
    np.testing.assert_array_equal(data.user_ids, ["ann", "bob"])
    np.testing.assert_array_equal(data.matrix.toarray(), [[0, 4], [5, 2]])
    implicit_by_name = read_file(path, user_col="item", item_col="user")
    np.testing.assert_array_equal(implicit_by_name.user_ids, ["jam", "tea"])
    ambiguous = tmp_path / "two.csv"
    ambiguous.write_text("uid,userId,item\n1,2,3\n")
    with pytest.raises(DataError, match=r"two\.csv: columns 'uid' and 'userId' could both be the "
                                        r"user; name one \(user_col= or --user-col\)"):
        read_file(ambiguous)
    assert read_file(ambiguous, user_col="uid").user_ids.tolist() == ["1"]


# -- bad frames ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("frame", "kwargs", "error", "message"), [
    (pd.DataFrame({"who": [1], "item": [2]}), {}, DataError,
     r"no user column: name one \(user=\) or call it one of user, user_id, userId, uid, .*; "
     r"the columns are: 'who', 'item'"),
    (pd.DataFrame({"user": [1], "item": [2]}), {"rating": "stars"}, DataError,
     r"no column 'stars' \(wanted for the rating\)"),
    (pd.DataFrame({"user": [1, 2], "item": [2, 3], "rating": [4.0, np.nan]}), {}, ParseError,
     r"field 'rating': missing rating in row 2"),
    (pd.DataFrame({"user": [1, None], "item": [2, 3]}), {}, ParseError,
     r"field 'user': missing user in row 2"),
    (pd.DataFrame({"user": [1], "item": [2], "rating": [np.inf]}), {}, ParseError,
     r"rating inf in row 1 is not finite"),
    (pd.DataFrame({"user": [1], "item": [2], "rating": ["good"]}), {}, ParseError,
     r"rating must be numeric"),
    (pd.DataFrame({"user": [1, [2]], "item": [2, 3]}), {}, ParseError,
     r"field 'user': user id in row 2 is a list, which cannot be an id"),
    (pd.DataFrame({"user": [1, 2], "item": [2, 3], "ts": [1, 10**25]}), {}, ParseError,
     r"field 'ts': timestamp 10{25} in row 2 is beyond the range of a 64-bit integer"),
    (pd.DataFrame({"user": [1], "item": [2], "ts": [2.0**64]}), {}, ParseError,
     r"in row 1 is beyond the range of a 64-bit integer"),
    (pd.DataFrame({"user": [1], "item": [2], "ts": [1.5]}), {}, ParseError,
     r"timestamp 1.5 in row 1 is not an integer"),
    (pd.DataFrame({"user": [], "item": []}), {}, EmptyDataError, r"the table has no rows"),
])
def test_bad_frames_get_one_line_errors(frame, kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        Interactions.from_pandas(frame, **kwargs)
    _one_line(info)


def test_from_pandas_refuses_what_is_not_a_frame():
    with pytest.raises(TypeError, match="expected a pandas DataFrame .* got dict"):
        Interactions.from_pandas({"user": [1], "item": [2]})


def test_from_arrays_takes_ids_beyond_int64():
    data = Interactions.from_arrays(np.array(["99999999999999999999999", "7"]), np.array([1, 1]))
    np.testing.assert_array_equal(data.user_ids, ["7", "99999999999999999999999"])


# -- fit takes what it is given --------------------------------------------------------------------
def test_as_interactions():
    data = Interactions.from_pandas(FRAME)
    assert as_interactions(data) is data
    matrix = sp.csr_matrix(np.array([[0, 1], [1, 1]], np.float64))
    wrapped = as_interactions(matrix)
    assert wrapped.matrix.dtype == np.float32 and not wrapped.explicit
    np.testing.assert_array_equal(wrapped.user_ids, ["0", "1"])
    assert as_interactions(sp.csr_matrix(np.array([[0, 4.0]]))).explicit
    np.testing.assert_array_equal(as_interactions(FRAME).matrix.toarray(), [[3, 5], [4, 0]])
    with pytest.raises(TypeError, match="expected an Interactions, a scipy.sparse .* got list"):
        as_interactions([[0, 1]])


def test_fit_on_a_frame_scores_as_fit_on_the_file(tmp_path):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"userId": rng.integers(0, 40, 600), "item_id": rng.integers(0, 30, 600)})
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateInteractionsWarning)
        data = read_file(path)
    from_frame = aerec.MultDAE(epochs=1, seed=5, device="cpu").fit(frame)
    from_file = aerec.MultDAE(epochs=1, seed=5, device="cpu").fit(data)
    np.testing.assert_array_equal(from_frame.item_ids_, data.item_ids)
    scores = from_frame.score(data.matrix)
    np.testing.assert_array_equal(scores, from_file.score(data.matrix))  # bit-equal
    assert np.isfinite(scores).all() and scores.std() > 0
    with pytest.raises(TypeError, match="got str"):
        aerec.MultDAE(epochs=1).fit("log.csv")


# -- the top-level API ---------------------------------------------------------------------------
def test_import_aerec_is_light():
    code = ("import sys, aerec; heavy = [m for m in ('torch', 'pandas', 'scipy') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_top_level_name_resolves():
    from aerec.data.datasets import load_dataset
    from aerec.data.preprocess import binarize, filter_min_counts
    from aerec.data.splits import given_split, strong_generalization
    from aerec.evaluation import evaluate_ranking
    from aerec.models import REGISTRY, Recommender
    from aerec.run_spec import RunSpec
    from aerec.runs import run

    expected = {cls.__name__: cls for cls in REGISTRY.values()}
    expected.update(Recommender=Recommender, Interactions=Interactions, load_dataset=load_dataset,
                    strong_generalization=strong_generalization, given_split=given_split,
                    evaluate_ranking=evaluate_ranking, binarize=binarize,
                    filter_min_counts=filter_min_counts, RunSpec=RunSpec, run=run)
    assert set(aerec.__all__) == {"__version__", *expected}
    for name, value in expected.items():
        assert getattr(aerec, name) is value
        assert name in dir(aerec)
    from aerec import EASE, MultVAE  # noqa: F401  (the form the README uses)
    with pytest.raises(AttributeError, match="no attribute 'MultVea'"):
        aerec.MultVea  # noqa: B018


# -- a data set's name or a file -----------------------------------------------------------------
def test_resolve_data_argument(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = ["ml-100k", "ml-1m"]
    Path("my.csv").write_text("user,item\n1,2\n")
    Path("ml-100k").mkdir()  # a folder of that name does not hide the data set
    assert resolve_data_argument("ml-100k", names) == ("dataset", "ml-100k")
    assert resolve_data_argument("my.csv", names) == ("file", Path("my.csv"))
    assert resolve_data_argument(str(tmp_path / "my.csv"), names)[0] == "file"
    with pytest.raises(DataError, match="other.csv: file not found"):
        resolve_data_argument("other.csv", names)
    with pytest.raises(DataError, match="ml-100k: is a folder"):
        resolve_data_argument("./ml-100k", names)
    with pytest.raises(ConfigError, match=r"'ml-2m' is neither a data set \(ml-100k, ml-1m\)"):
        resolve_data_argument("ml-2m", names)


# -- the documentation's snippet runs ------------------------------------------------------------
def test_your_data_snippet_runs_and_prints_what_it_says(monkeypatch):
    text = (DOCS / "your-data.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "docs/your-data.md", "exec"), {})
    promised = re.search(r"^# (\{.*?\})", code, re.M).group(1)
    assert printed.getvalue().strip() == promised
