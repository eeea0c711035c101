"""Synthetic data: exact sizes, distinct items, the shapes asked for, determinism, readable files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aerec.cli import main
from aerec.data import readers, synthetic
from aerec.data.synthetic import SHAPES, SynthParams, fitted_exponent, synthesize, write_synthetic
from aerec.errors import ConfigError


def _same(a, b) -> bool:
    return (a.matrix.shape == b.matrix.shape and np.array_equal(a.matrix.indptr, b.matrix.indptr)
            and np.array_equal(a.matrix.indices, b.matrix.indices)
            and np.array_equal(a.matrix.data, b.matrix.data))


def test_sizes_are_exact_and_each_user_has_distinct_items():
    d = synthesize(n_users=500, n_items=300, n_interactions=20_000, seed=1)
    m = d.matrix
    assert m.shape == (500, 300) and m.nnz == 20_000
    assert m.has_canonical_format  # sorted, no duplicate (user, item) pairs
    counts = np.diff(m.indptr)
    assert counts.min() >= SynthParams().min_user and counts.max() <= 300
    assert not d.explicit and d.timestamps is None and set(np.unique(m.data)) == {1.0}
    assert list(d.user_ids[:3]) == ["1", "2", "3"] and d.item_ids[-1] == "300"


def test_heavy_users_and_chunk_boundaries(monkeypatch):
    # Users with more than 1/8 of the items take the exponential-keys path; a chunk of 7 users
    # puts many boundaries in the data.
    monkeypatch.setattr(synthetic, "_CHUNK_USERS", 7)
    d = synthesize(n_users=50, n_items=40, n_interactions=1_200, seed=2)
    counts = np.diff(d.matrix.indptr)
    assert d.matrix.nnz == 1_200 and d.matrix.has_canonical_format
    assert counts.max() > 40 / 8  # some heavy users exist
    assert counts.max() <= 40


def test_same_seed_same_data_other_seed_other_data():
    a = synthesize(n_users=300, n_items=200, n_interactions=9_000, explicit=True, seed=5)
    b = synthesize(n_users=300, n_items=200, n_interactions=9_000, explicit=True, seed=5)
    c = synthesize(n_users=300, n_items=200, n_interactions=9_000, explicit=True, seed=6)
    assert _same(a, b) and np.array_equal(a.timestamps, b.timestamps)
    assert not _same(a, c)


def test_item_popularity_follows_the_power_law_asked_for():
    # The weights are a power law; the counts come out a little flatter, because a user's items
    # are distinct: heavy users, having taken the popular items, draw further down the tail.
    fits = {}
    for exponent in (0.6, 1.0, 1.2):
        params = SynthParams(item_exponent=exponent, item_offset=5.0, affinity=0.0)
        d = synthesize(n_users=4_000, n_items=1_000, n_interactions=120_000, seed=3, params=params)
        counts = np.bincount(d.matrix.indices, minlength=1_000)
        fits[exponent] = fitted_exponent(counts, offset=5.0, low=0.05)
    for exponent, fit in fits.items():
        assert 0.85 * exponent < fit <= 1.02 * exponent
    assert fits[0.6] < fits[1.0] < fits[1.2]


def test_user_activity_is_lognormal_above_the_minimum():
    params = SynthParams(activity_sigma=0.8, min_user=5)
    d = synthesize(n_users=6_000, n_items=2_000, n_interactions=300_000, seed=4, params=params)
    extra = np.diff(d.matrix.indptr) - 5
    logs = np.log(extra[extra >= 10])  # rounding bends the lowest counts
    # log(extra) is normal with sigma 0.8: its spread (a truncated normal's, on the kept side) is
    # a little below 0.8, and it is symmetric about its median.
    assert 0.6 < logs.std() < 0.85
    assert abs(np.mean(logs) - np.median(logs)) < 0.1


def test_explicit_ratings_and_timestamps():
    d = synthesize("ml-100k", seed=0)
    assert d.explicit and d.matrix.shape == (943, 1_682) and d.matrix.nnz == 100_000
    assert set(np.unique(d.matrix.data)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert 3.2 < d.matrix.data.mean() < 4.2
    assert len(d.timestamps) == d.matrix.nnz and d.timestamps.min() >= 946_684_800


def test_named_shapes_are_the_papers():
    assert SHAPES["ml-20m"].n_users == 136_677 and SHAPES["ml-20m"].n_items == 20_108
    assert SHAPES["netflix"].n_users == 480_189 and SHAPES["netflix"].n_items == 17_770
    assert SHAPES["netflix"].n_interactions > 100_000_000


def test_impossible_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="do not fit"):
        synthesize(n_users=10, n_items=5, n_interactions=51)
    with pytest.raises(ConfigError, match="at least 5 per user"):
        synthesize(n_users=10, n_items=50, n_interactions=20)
    with pytest.raises(ConfigError, match="unknown shape"):
        synthesize("ml-30m")


@pytest.mark.parametrize("explicit", [True, False])
def test_csv_file_reads_back_as_the_same_data(tmp_path, explicit):
    kw = dict(n_users=120, n_items=80, n_interactions=3_000, explicit=explicit, seed=7)
    path = tmp_path / "ratings.csv"
    write_synthetic(path, **kw)
    expected = synthesize(**kw)
    if explicit:
        got = readers.read_ratings_csv(path)
        assert np.array_equal(got.timestamps, expected.timestamps)
    else:
        got = readers.read_table(path, user_col="userId", item_col="movieId")
    # every item and user occurs, so the readers' vocabularies are the generator's
    assert list(got.user_ids) == list(expected.user_ids)
    assert list(got.item_ids) == list(expected.item_ids)
    assert _same(got, expected)


def test_tsv_parquet_and_lightgcn_files_read_back(tmp_path):
    kw = dict(n_users=100, n_items=60, n_interactions=2_500, seed=8)
    expected = synthesize(**kw)
    write_synthetic(tmp_path / "d.tsv", **kw)
    assert _same(readers.read_table(tmp_path / "d.tsv", user_col="userId", item_col="movieId"),
                 expected)
    pytest.importorskip("pyarrow")
    write_synthetic(tmp_path / "d.parquet", **kw)
    assert _same(readers.read_table(tmp_path / "d.parquet", user_col="userId", item_col="movieId"),
                 expected)
    write_synthetic(tmp_path / "train.txt", **kw)
    got = readers.read_lightgcn(tmp_path / "train.txt")
    assert got.matrix.nnz == expected.matrix.nnz
    assert np.array_equal(got.matrix.indices, expected.matrix.indices)


def test_lightgcn_refuses_ratings(tmp_path):
    with pytest.raises(ConfigError, match="implicit"):
        write_synthetic(tmp_path / "train.txt", n_users=10, n_items=10, n_interactions=60,
                        explicit=True)


def test_cli_writes_a_file_the_readers_load(tmp_path, capsys):
    out = tmp_path / "synth.csv"
    code = main(["data", "synth", "--out", str(out), "--users", "200", "--items", "100",
                 "--interactions", "4000", "--explicit", "--seed", "3", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["interactions"] == 4000 and summary["explicit"] is True
    got = readers.read_ratings_csv(out)
    assert got.matrix.nnz == 4000
    assert _same(got, synthesize(n_users=200, n_items=100, n_interactions=4000, explicit=True,
                                 seed=3))


def test_cli_reports_bad_sizes_on_one_line(tmp_path, capsys):
    code = main(["data", "synth", "--out", str(tmp_path / "x.csv"), "--users", "3",
                 "--items", "3", "--interactions", "100"])
    assert code == 2
    assert "do not fit" in capsys.readouterr().err
