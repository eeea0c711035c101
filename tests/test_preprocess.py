"""Preprocessing on hand-made data whose right answers are written out in full."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from aerec.data.interactions import Interactions
from aerec.data.preprocess import (
    DuplicateInteractionsWarning,
    binarize,
    drop_duplicates,
    filter_min_counts,
)
from aerec.errors import ConfigError, DataError, EmptyDataError


def _ratings() -> Interactions:
    # a: x=4 (t10), y=3 (t20); b: x=5 (t30); c: z=1 (t40)
    return Interactions.from_arrays(
        np.array(["a", "a", "b", "c"]), np.array(["x", "y", "x", "z"]),
        np.array([4.0, 3.0, 5.0, 1.0]), np.array([10, 20, 30, 40]),
    )


# -- drop_duplicates -----------------------------------------------------------------------------
def test_drop_duplicates_keeps_latest_timestamp_and_warns():
    users = np.array([1, 1, 2, 1])
    items = np.array([5, 5, 5, 5])
    with pytest.warns(DuplicateInteractionsWarning, match=r"2 duplicate .* in ratings\.csv"):
        keep = drop_duplicates(users, items, np.array([10, 30, 5, 20]), source="ratings.csv")
    np.testing.assert_array_equal(keep, [1, 2])


def test_drop_duplicates_ties_and_no_timestamps_keep_last_line():
    users = np.array(["u", "u", "v", "u"])
    items = np.array(["i", "i", "i", "i"])
    with pytest.warns(DuplicateInteractionsWarning):
        np.testing.assert_array_equal(drop_duplicates(users, items, np.array([7, 9, 1, 9])), [2, 3])
    with pytest.warns(DuplicateInteractionsWarning, match="the last one"):
        np.testing.assert_array_equal(drop_duplicates(users, items), [2, 3])


def test_drop_duplicates_without_repeats_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keep = drop_duplicates(np.array([1, 1, 2]), np.array([1, 2, 1]))
    np.testing.assert_array_equal(keep, [0, 1, 2])


# -- binarize ------------------------------------------------------------------------------------
def test_binarize_keeps_ratings_above_threshold_as_ones():
    out = binarize(_ratings())
    assert not out.explicit
    np.testing.assert_array_equal(out.user_ids, ["a", "b", "c"])
    np.testing.assert_array_equal(out.item_ids, ["x", "y", "z"])
    np.testing.assert_array_equal(out.matrix.toarray(), [[1, 0, 0], [1, 0, 0], [0, 0, 0]])
    assert out.matrix.dtype == np.float32
    np.testing.assert_array_equal(out.timestamps, [10, 30])


def test_binarize_threshold_is_strict():
    out = binarize(_ratings(), threshold=3.0)
    np.testing.assert_array_equal(out.matrix.toarray(), [[1, 0, 0], [1, 0, 0], [0, 0, 0]])
    out = binarize(_ratings(), threshold=2.5)
    np.testing.assert_array_equal(out.matrix.toarray(), [[1, 1, 0], [1, 0, 0], [0, 0, 0]])


def test_binarize_errors():
    with pytest.raises(EmptyDataError, match="threshold 5"):
        binarize(_ratings(), threshold=5)
    with pytest.raises(DataError, match="already implicit"):
        binarize(binarize(_ratings()))


# -- filter_min_counts ---------------------------------------------------------------------------
def _clicks() -> Interactions:
    # u1: i1 i2 i3 | u2: i1 i2 | u3: i1 i4 | u4: i3   (timestamp = 10 * line)
    pairs = [("u1", "i1"), ("u1", "i2"), ("u1", "i3"), ("u2", "i1"), ("u2", "i2"),
             ("u3", "i1"), ("u3", "i4"), ("u4", "i3")]
    users, items = map(np.array, zip(*pairs, strict=True))
    return Interactions.from_arrays(users, items, np.arange(1.0, 9.0), 10 * np.arange(1, 9))


def test_filter_min_counts_items_first_then_users_in_one_pass():
    # Item counts i1=3 i2=2 i3=2 i4=1: min_item=2 drops i4. Then u1=3 u2=2 u3=1 u4=1: min_user=2
    # keeps u1 and u2. i3 ends with one interaction, below min_item: the pass is not repeated.
    out = filter_min_counts(_clicks(), min_user=2, min_item=2)
    np.testing.assert_array_equal(out.user_ids, ["u1", "u2"])
    np.testing.assert_array_equal(out.item_ids, ["i1", "i2", "i3"])
    np.testing.assert_array_equal(out.matrix.toarray(), [[1, 2, 3], [4, 5, 0]])
    np.testing.assert_array_equal(out.timestamps, [10, 20, 30, 40, 50])
    assert out.explicit


def test_filter_min_counts_only_users():
    out = filter_min_counts(_clicks(), min_user=2)
    np.testing.assert_array_equal(out.user_ids, ["u1", "u2", "u3"])
    np.testing.assert_array_equal(out.item_ids, ["i1", "i2", "i3", "i4"])
    np.testing.assert_array_equal(out.matrix.toarray(), [[1, 2, 3, 0], [4, 5, 0, 0], [6, 0, 0, 7]])


def test_filter_min_counts_drops_emptied_users_and_items_keeping_order():
    out = filter_min_counts(binarize(_ratings()))  # c and y, z have no interactions left
    np.testing.assert_array_equal(out.user_ids, ["a", "b"])
    np.testing.assert_array_equal(out.item_ids, ["x"])
    np.testing.assert_array_equal(out.matrix.toarray(), [[1], [1]])
    assert not out.explicit


def test_filter_min_counts_errors_name_the_filter():
    with pytest.raises(EmptyDataError, match="min_item=4"):
        filter_min_counts(_clicks(), min_item=4)
    with pytest.raises(EmptyDataError, match="min_user=4"):
        filter_min_counts(_clicks(), min_user=4)
    with pytest.raises(ConfigError, match="min_user"):
        filter_min_counts(_clicks(), min_user=-1)
