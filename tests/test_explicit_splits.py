"""Rating-prediction splits: canonical ML-100K folds, random holdout over seeds, time split."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from aerec.data.explicit_splits import (
    canonical_fold,
    carve_latest,
    parse_cutoff,
    random_holdout,
    time_split,
)
from aerec.data.interactions import Interactions
from aerec.errors import ConfigError, DataError
from aerec.data.split_kinds import SPLIT_KINDS

DAY = 86_400


def _triples(inter: Interactions) -> set[tuple[str, str, float]]:
    rows, cols, values, _ = inter.to_arrays()
    return set(zip(inter.user_ids[rows].tolist(), inter.item_ids[cols].tolist(), values.tolist()))


def _ratings(n_users=40, n_items=30, density=0.3, seed=0) -> Interactions:
    m = sp.random(n_users, n_items, density=density, format="csr", random_state=seed,
                  dtype=np.float32)
    m.data = np.ceil(m.data * 5).astype(np.float32)
    ts = np.arange(m.nnz, dtype=np.int64) * DAY + 10**9
    return Interactions(m, np.arange(n_users).astype(str), np.arange(n_items).astype(str), ts, True)


def _check_shape(split):
    """Rows aligned everywhere, validation fold-in is the training part, test fold-in all of it."""
    for part in (split.validation.fold_in, split.validation.targets, split.test.fold_in,
                 split.test.targets):
        assert np.array_equal(part.user_ids, split.train.user_ids)
        assert np.array_equal(part.item_ids, split.train.item_ids)
    assert _triples(split.validation.fold_in) == _triples(split.train)
    assert _triples(split.test.fold_in) == _triples(split.train) | _triples(split.validation.targets)


def test_random_holdout_is_disjoint_covering_and_sized():
    data = _ratings()
    split = random_holdout(data, test_fraction=0.1, seed=3, validation_fraction=0.2)
    _check_shape(split)
    train, val, test = (_triples(split.train), _triples(split.validation.targets),
                        _triples(split.test.targets))
    assert not train & val and not train & test and not val & test
    assert train | val | test == _triples(data)
    assert len(test) == round(0.1 * data.nnz)
    assert len(val) == round(0.2 * (data.nnz - len(test)))
    assert split.kind == "random" and split.params["seed"] == 3


def test_random_holdout_is_deterministic_per_seed():
    data = _ratings()
    a = random_holdout(data, seed=5)
    b = random_holdout(data, seed=5)
    c = random_holdout(data, seed=6)
    assert _triples(a.test.targets) == _triples(b.test.targets)
    assert _triples(a.validation.targets) == _triples(b.validation.targets)
    assert _triples(a.test.targets) != _triples(c.test.targets)


def test_random_holdout_rejects_bad_fractions():
    with pytest.raises(ConfigError, match="test_fraction"):
        random_holdout(_ratings(), test_fraction=1.5)
    with pytest.raises(ConfigError, match="validation_fraction"):
        random_holdout(_ratings(), validation_fraction=0.0)


def _write_fold(folder, base_lines, test_lines, name="u1"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.base").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in base_lines))
    (folder / f"{name}.test").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in test_lines))


def test_canonical_fold_keeps_every_test_rating(tmp_path):
    base = [(u, i, 1 + (u * i) % 5, 880000000 + u) for u in range(1, 9) for i in range(1, 7)]
    test = [(1, 7, 4, 1), (2, 3, 5, 1), (9, 2, 3, 1)]  # item 7 and user 9 have no training rating
    base = [b for b in base if (b[0], b[1]) != (2, 3)]
    _write_fold(tmp_path, base, test)
    split = canonical_fold(tmp_path, 1, validation_fraction=0.25, seed=1)
    _check_shape(split)
    assert split.kind == "u1"
    assert list(split.train.item_ids) == [str(i) for i in range(1, 8)]
    assert list(split.train.user_ids) == [str(u) for u in range(1, 10)]
    assert _triples(split.test.targets) == {("1", "7", 4.0), ("2", "3", 5.0), ("9", "2", 3.0)}
    assert split.params["test_ratings_unseen_item"] == 1
    assert split.params["test_ratings_unseen_user"] == 1
    assert len(_triples(split.train)) + len(_triples(split.validation.targets)) == len(base)
    assert len(_triples(split.validation.targets)) == round(0.25 * len(base))


def test_canonical_fold_names_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="unknown fold"):
        canonical_fold(tmp_path, "u9")


def test_ml100k_u1_as_published(shared_data_dir):
    split = canonical_fold(shared_data_dir / "ml-100k", "u1")
    assert split.test.targets.nnz == 20_000  # all of u1.test, none dropped
    assert split.test.fold_in.nnz == 80_000
    assert split.train.nnz + split.validation.targets.nnz == 80_000
    assert split.params["test_ratings_unseen_item"] == 32
    assert split.train.n_users == 943 and split.train.n_items == 1682


def _timed():
    # users 0..3, items 0..3; a day per step
    events = [  # (user, item, rating, day)
        (0, 0, 5, 1), (0, 1, 3, 2), (1, 0, 4, 3), (1, 2, 2, 4), (2, 1, 1, 5), (0, 2, 4, 6),
        (1, 1, 5, 10), (0, 3, 2, 11), (3, 0, 4, 12), (2, 2, 3, 13),
    ]
    u, i, r, d = map(np.array, zip(*events))
    return Interactions.from_arrays(u, i, r.astype(np.float32), 10**9 + d * DAY)


def test_time_split_drops_users_and_items_unseen_before_the_cutoff():
    data = _timed()
    split = time_split(data, 10**9 + 10 * DAY, validation_fraction=0.2)
    _check_shape(split)
    assert list(split.train.user_ids) == ["0", "1", "2"]  # user 3 rates only after the cutoff
    assert list(split.train.item_ids) == ["0", "1", "2"]  # item 3 too
    assert _triples(split.test.targets) == {("1", "1", 5.0), ("2", "2", 3.0)}
    assert split.params["test_ratings_dropped_user"] == 1
    assert split.params["test_ratings_dropped_item"] == 1
    # validation is the latest training rating whose user and item keep an earlier one
    assert _triples(split.validation.targets) == {("0", "2", 4.0)}
    assert max(split.train.timestamps) < 10**9 + 10 * DAY


def test_time_split_with_an_end_date_and_errors():
    data = _timed()
    split = time_split(data, "2001-09-19", end=10**9 + 12 * DAY, validation_fraction=0.2)
    assert _triples(split.test.targets) == {("1", "1", 5.0)}
    no_ts = Interactions(data.matrix, data.user_ids, data.item_ids, None, True)
    with pytest.raises(DataError, match="timestamps"):
        time_split(no_ts, 10**9)
    with pytest.raises(DataError, match="before the cutoff"):
        time_split(data, 10**9)


def test_carve_latest_never_empties_a_user():
    data = _timed()
    held = carve_latest(data, 0.5)
    rows, cols, _, _ = data.to_arrays()
    assert set(rows[~held]) == set(rows)  # every user keeps a training rating
    assert set(cols[~held]) == set(cols)


def test_parse_cutoff():
    assert parse_cutoff("2005-12-01") == 1133395200
    assert parse_cutoff("2005-12-01T06:00:00+06:00") == 1133395200
    assert parse_cutoff(1133395200) == 1133395200
    assert parse_cutoff("1133395200") == 1133395200
    with pytest.raises(ConfigError, match="date"):
        parse_cutoff("first of December")


def test_kinds_are_registered_with_runs():
    assert {"u1", "u2", "u3", "u4", "u5", "ua", "ub", "random", "time"} <= set(SPLIT_KINDS)
