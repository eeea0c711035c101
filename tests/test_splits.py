"""aerec.data.splits: determinism, disjointness, coverage, and the match with the reference notebook."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aerec.data.interactions import Interactions
from aerec.data.splits import HeldOut, Split, given_split, strong_generalization
from aerec.errors import ConfigError


def random_interactions(seed: int = 0, n_users: int = 120, n_items: int = 150) -> Interactions:
    """Users with 1..25 items, non-contiguous integer ids, and a vocabulary given in shuffled order
    so that "ascending raw id" cannot be confused with "row order"."""
    rng = np.random.default_rng(seed)
    user_ids = rng.choice(10_000, size=n_users, replace=False)
    item_ids = rng.choice(10_000, size=n_items, replace=False)
    users, items = [], []
    for u in user_ids:
        n = int(rng.integers(1, 26))
        # A skewed popularity, so that some items are seen by no training user.
        chosen = rng.choice(n_items, size=n, replace=False, p=_zipf(n_items))
        users.extend([u] * n)
        items.extend(item_ids[chosen])
    timestamps = rng.integers(0, 10**9, size=len(users))
    return Interactions.from_arrays(
        np.array(users), np.array(items), timestamps=timestamps,
        user_ids=rng.permutation(user_ids), item_ids=rng.permutation(item_ids),
    )


def _zipf(n: int) -> np.ndarray:
    p = 1 / np.arange(1, n + 1) ** 1.2
    return p / p.sum()


def pairs(data: Interactions) -> set[tuple[str, str]]:
    rows, cols, _, _ = data.to_arrays()
    return set(zip(data.user_ids[rows].tolist(), data.item_ids[cols].tolist()))


def assert_same(a: Interactions, b: Interactions) -> None:
    assert (a.matrix != b.matrix).nnz == 0 and a.matrix.shape == b.matrix.shape
    np.testing.assert_array_equal(a.user_ids, b.user_ids)
    np.testing.assert_array_equal(a.item_ids, b.item_ids)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)


def parts(split: Split) -> list[Interactions]:
    return [split.train, split.validation.fold_in, split.validation.targets,
            split.test.fold_in, split.test.targets]


DATA = random_interactions()


# -- strong generalization --------------------------------------------------------------------
def test_same_seed_same_split_other_seed_other_split():
    a = strong_generalization(DATA, 20, seed=7)
    b = strong_generalization(DATA, 20, seed=7)
    c = strong_generalization(DATA, 20, seed=8)
    for x, y in zip(parts(a), parts(b)):
        assert_same(x, y)
    assert a.params == b.params
    assert not np.array_equal(a.test.fold_in.user_ids, c.test.fold_in.user_ids)


def test_users_are_disjoint_and_cover_everyone():
    split = strong_generalization(DATA, 20)
    train = set(split.train.user_ids)
    val, test = set(split.validation.fold_in.user_ids), set(split.test.fold_in.user_ids)
    assert len(val) == len(test) == 20 and len(train) == DATA.n_users - 40
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(DATA.user_ids)


def test_fold_in_and_targets_partition_the_restricted_interactions():
    split = strong_generalization(DATA, 20)
    train_items = set(split.train.item_ids)
    assert train_items == {i for _, i in pairs(split.train)}  # exactly the items training users saw
    all_pairs = pairs(DATA)
    for held in (split.validation, split.test):
        users = set(held.fold_in.user_ids)
        fold_in, targets = pairs(held.fold_in), pairs(held.targets)
        assert not fold_in & targets
        expected = {(u, i) for u, i in all_pairs if u in users and i in train_items}
        assert fold_in | targets == expected
    assert pairs(split.train) == {(u, i) for u, i in all_pairs if u in set(split.train.user_ids)}


def test_targets_are_a_fifth_of_each_user_with_five_items():
    split = strong_generalization(DATA, 30, test_prop=0.2)
    for held in (split.validation, split.test):
        n_fold_in = np.diff(held.fold_in.matrix.indptr)
        n_targets = np.diff(held.targets.matrix.indptr)
        n = n_fold_in + n_targets
        np.testing.assert_array_equal(n_targets, np.where(n >= 5, (0.2 * n).astype(int), 0))
        assert (n >= 5).any() and (n < 5).any()  # both branches are exercised


def test_fraction_of_users_and_timestamps_travel_with_interactions():
    split = strong_generalization(DATA, 0.1)
    assert split.params["n_heldout"] == 12 == split.test.n_users
    stamp = dict(zip(zip(*np.nonzero(DATA.matrix)), DATA.timestamps))
    stamp = {(DATA.user_ids[u], DATA.item_ids[i]): t for (u, i), t in stamp.items()}
    for part in parts(split):
        rows, cols, _, ts = part.to_arrays()
        got = [stamp[(part.user_ids[r], part.item_ids[c])] for r, c in zip(rows, cols)]
        np.testing.assert_array_equal(ts, got)


def notebook_reference(data: Interactions, n_heldout: int, seed: int, test_prop: float):
    """The vae_cf notebook's procedure, rewritten with pandas from its description.

    Returns the permuted user ids, the training item ids, and the (fold-in, targets) data frames of
    the validation and test groups.
    """
    rows, cols, _, _ = data.to_arrays()
    raw = pd.DataFrame({
        "userId": data.user_ids[rows].astype(np.int64),
        "movieId": data.item_ids[cols].astype(np.int64),
    }).sort_values(["userId", "movieId"], ignore_index=True)  # the order of ratings.csv

    unique_uid = raw.groupby("userId").size().index
    unique_uid = unique_uid[np.random.RandomState(seed).permutation(unique_uid.size)]
    n_users = unique_uid.size
    tr_users = unique_uid[: n_users - 2 * n_heldout]
    vd_users = unique_uid[n_users - 2 * n_heldout : n_users - n_heldout]
    te_users = unique_uid[n_users - n_heldout :]
    train_plays = raw.loc[raw["userId"].isin(tr_users)]
    unique_sid = pd.unique(train_plays["movieId"])

    def split_train_test_proportion(frame):
        tr_list, te_list = [], []
        rng = np.random.RandomState(seed)
        for _, group in frame.groupby("userId"):
            n_items_u = len(group)
            if n_items_u >= 5:
                idx = np.zeros(n_items_u, dtype=bool)
                idx[rng.choice(n_items_u, size=int(test_prop * n_items_u), replace=False)] = True
                tr_list.append(group[~idx])
                te_list.append(group[idx])
            else:
                tr_list.append(group)
        return pd.concat(tr_list), pd.concat(te_list)

    groups = []
    for users in (vd_users, te_users):
        plays = raw.loc[raw["userId"].isin(users)]
        plays = plays.loc[plays["movieId"].isin(unique_sid)]
        groups.append(split_train_test_proportion(plays))
    return unique_uid, unique_sid, groups


@pytest.mark.parametrize("seed, n_heldout, test_prop", [(98765, 25, 0.2), (3, 10, 0.35)])
def test_matches_the_reference_notebook(seed, n_heldout, test_prop):
    data = random_interactions(seed=1, n_users=150)
    split = strong_generalization(data, n_heldout, seed=seed, test_prop=test_prop)
    # Held-out interactions with items no training user saw exist, so the restriction is tested.
    assert split.params["validation_interactions_dropped"] > 0
    assert split.params["test_interactions_dropped"] > 0
    uid, sid, [(vd_tr, vd_te), (te_tr, te_te)] = notebook_reference(data, n_heldout, seed, test_prop)

    n_train = len(uid) - 2 * n_heldout
    uid = uid.astype(str)
    np.testing.assert_array_equal(split.train.user_ids, uid[:n_train])
    np.testing.assert_array_equal(split.validation.fold_in.user_ids, uid[n_train : n_train + n_heldout])
    np.testing.assert_array_equal(split.test.fold_in.user_ids, uid[n_train + n_heldout :])
    np.testing.assert_array_equal(split.train.item_ids, sid.astype(str))

    def as_pairs(frame):
        return set(zip(frame["userId"].astype(str), frame["movieId"].astype(str)))

    assert pairs(split.validation.fold_in) == as_pairs(vd_tr)
    assert pairs(split.validation.targets) == as_pairs(vd_te)
    assert pairs(split.test.fold_in) == as_pairs(te_tr)
    assert pairs(split.test.targets) == as_pairs(te_te)


def test_users_without_interactions_are_left_out():
    rows, cols, _, ts = DATA.to_arrays()
    data = Interactions.from_indices(
        rows, cols, np.ones(len(rows)), ts, user_ids=np.append(DATA.user_ids, "idle"),
        item_ids=DATA.item_ids, explicit=False,
    )
    split = strong_generalization(data, 20)
    assert split.params["empty_users_dropped"] == 1
    assert split.params["n_users"] == DATA.n_users
    for a, b in zip(parts(split), parts(strong_generalization(DATA, 20))):
        np.testing.assert_array_equal(a.user_ids, b.user_ids)


def test_strong_generalization_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="n_heldout"):
        strong_generalization(DATA, 60)  # 120 users leave none to train
    with pytest.raises(ConfigError, match="fraction"):
        strong_generalization(DATA, 0.5)
    with pytest.raises(ConfigError, match="n_heldout"):
        strong_generalization(DATA, 0)
    with pytest.raises(ConfigError, match="test_prop"):
        strong_generalization(DATA, 10, test_prop=1.0)
    with pytest.raises(TypeError, match="Interactions"):
        strong_generalization(DATA.matrix, 10)


# -- given split -------------------------------------------------------------------------------
def given_pair():
    rng = np.random.default_rng(5)
    train = random_interactions(seed=2, n_users=40, n_items=30)
    rows, cols, values, _ = train.to_arrays()
    # Test: fresh pairs of known users and items, plus one unknown user and one unknown item.
    seen = set(zip(rows.tolist(), cols.tolist()))
    fresh = [(u, i) for u in range(40) for i in range(30) if (u, i) not in seen]
    pick = [fresh[j] for j in rng.choice(len(fresh), size=60, replace=False)]
    users = [train.user_ids[u] for u, _ in pick] + ["stranger", train.user_ids[0]]
    items = [train.item_ids[i] for _, i in pick] + [train.item_ids[0], "new-item"]
    test = Interactions.from_arrays(np.array(users), np.array(items), rng.integers(1, 6, len(users)))
    return train, test


def test_given_split_holds_out_validation_and_maps_test():
    train, test = given_pair()
    split = given_split(train, test, validation_fraction=0.25, seed=4)
    assert split.kind == "given"
    assert split.params["test_users_dropped"] == 1
    assert split.params["test_interactions_dropped_user"] == 1
    assert split.params["test_interactions_dropped_item"] == 1
    assert split.params["test_interactions_in_train"] == 0
    unknown = {("stranger", train.item_ids[0]), (train.user_ids[0], "new-item")}
    assert pairs(split.test.targets) == pairs(test) - unknown
    assert split.test.fold_in is train

    fold_in, held = split.validation.fold_in, split.validation.targets
    assert fold_in is split.train
    assert not pairs(fold_in) & pairs(held) and pairs(fold_in) | pairs(held) == pairs(train)
    n = np.diff(train.matrix.indptr)
    expected = np.where(n >= 2, np.maximum(1, (0.25 * n).astype(int)), 0)
    np.testing.assert_array_equal(np.diff(held.matrix.indptr), expected)

    again = given_split(train, test, validation_fraction=0.25, seed=4)
    other = given_split(train, test, validation_fraction=0.25, seed=5)
    assert_same(split.validation.targets, again.validation.targets)
    assert pairs(split.validation.targets) != pairs(other.validation.targets)


def test_given_split_rejects_bad_arguments():
    train, test = given_pair()
    with pytest.raises(ConfigError, match="validation_fraction"):
        given_split(train, test, validation_fraction=0)
    with pytest.raises(ConfigError, match="seed"):
        given_split(train, test, seed=-1)


def test_held_out_requires_aligned_users():
    with pytest.raises(ValueError, match="same users"):
        HeldOut(DATA, DATA.select_users(np.arange(DATA.n_users)[::-1]))
