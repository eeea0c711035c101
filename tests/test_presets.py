"""The Mult-VAE paper's data sets as presets: tiny files in each official format, counted by hand.

Every fixture is written here, in the layout of the official file, and read through
``load_dataset(name, data_dir=...)`` then ``apply_protocol``; no real data is used.
"""

from __future__ import annotations

import numpy as np
import pytest

from aerec.data.datasets import PAPER_PROTOCOLS, PaperProtocol, apply_protocol, load_dataset
from aerec.data import msd
from aerec.data.msd import read_taste_profile
from aerec.data.preprocess import DuplicateInteractionsWarning
from aerec.errors import DataError, EmptyDataError, ParseError

# user -> {item: rating}. Rule of ML-20M and Netflix: ratings of 4 or more, then users with 5 or
# more of them. Kept: u1 (5 fours), u2 (its 3.5 does not count), u4, u6. Dropped: u3 (4
# positives: its 3 does not count), u5 (none), u7 (4 positives: the 3.5 is decisive). Item 60 is
# positive only for u3, so it leaves with u3: 4 users x 5 items (10..50), 20 interactions.
RATINGS = {
    1: {10: 4, 20: 4, 30: 4, 40: 4, 50: 4},
    2: {10: 5, 20: 4, 30: 4.5, 40: 4, 50: 4, 60: 3.5},
    3: {10: 4, 20: 4, 30: 4, 60: 4, 50: 3},
    4: {10: 5, 20: 5, 30: 5, 40: 5, 50: 5, 60: 2},
    5: {10: 1, 20: 2},
    6: {10: 4, 20: 4.5, 30: 4, 40: 4, 50: 4, 60: 3},
    7: {10: 4, 20: 4, 30: 4, 40: 4, 50: 3.5},
}
KEPT_USERS = ["1", "2", "4", "6"]
KEPT_ITEMS = ["10", "20", "30", "40", "50"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No data folder or cache of the machine may steer these tests."""
    monkeypatch.delenv("AEREC_DATA_DIR", raising=False)
    monkeypatch.setenv("AEREC_CACHE_DIR", str(tmp_path / "cache"))


def _counts(data):
    return data.n_users, data.n_items, data.nnz


def _preset(name, data_dir):
    return apply_protocol(load_dataset(name, data_dir=data_dir), PAPER_PROTOCOLS[name])


def test_the_papers_protocols():
    assert PAPER_PROTOCOLS["ml-20m"] == PaperProtocol(3.5, 5, 0, 10_000, 0.2, 136_677, 20_108)
    assert PAPER_PROTOCOLS["netflix"] == PaperProtocol(3.5, 5, 0, 40_000, 0.2, 463_435, 17_769)
    assert PAPER_PROTOCOLS["msd"] == PaperProtocol(None, 20, 200, 50_000, 0.2, 571_355, 41_140)


# -- ML-20M: ratings.csv -------------------------------------------------------------------------
def _write_ml20m(root):
    folder = root / "ml-20m"
    folder.mkdir(parents=True)
    lines = ["userId,movieId,rating,timestamp"]
    lines += [f"{u},{i},{r:.1f},{1_000_000 + 10 * u + i}"
              for u, items in RATINGS.items() for i, r in items.items()]
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    (folder / "movies.csv").write_text("movieId,title,genres\n10,\"Heat, the (1995)\",Action\n")
    return folder


def test_ml20m_preset_counts(tmp_path):
    _write_ml20m(tmp_path)
    raw = load_dataset("ml-20m", data_dir=tmp_path)
    assert _counts(raw) == (7, 6, 35) and raw.explicit
    data = apply_protocol(raw, PAPER_PROTOCOLS["ml-20m"])
    assert _counts(data) == (4, 5, 20) and not data.explicit
    assert list(data.user_ids) == KEPT_USERS and list(data.item_ids) == KEPT_ITEMS
    np.testing.assert_array_equal(data.matrix.toarray(), np.ones((4, 5)))
    assert data.item_titles["10"] == "Heat, the (1995)"


# -- Netflix: training_set/mv_*.txt or combined_data_*.txt ---------------------------------------
def _netflix_blocks():
    """One 'MovieID:' block per movie; customers get large ids, movies 1..6, ratings whole stars."""
    blocks = {}
    for u, items in RATINGS.items():
        for i, r in items.items():
            stars = int(np.floor(r)) if r != 4.5 else 5  # 3.5 -> 3 stays below the cut
            blocks.setdefault(i // 10, []).append(f"{100_000 + u},{stars},2005-0{u}-1{i // 10}")
    return {movie: f"{movie}:\n" + "\n".join(lines) + "\n" for movie, lines in sorted(blocks.items())}


def _write_netflix_original(root):
    folder = root / "netflix" / "training_set"
    folder.mkdir(parents=True)
    for movie, block in _netflix_blocks().items():
        (folder / f"mv_{movie:07d}.txt").write_text(block)
    (root / "netflix" / "movie_titles.txt").write_bytes(
        b"1,2003,Dinosaur Planet\n2,NULL,Isle of Man TT 2004 Review, Part 2\n6,1997,Caf\xe9\n")


def _write_netflix_combined(root):
    folder = root / "netflix"
    folder.mkdir(parents=True)
    blocks = list(_netflix_blocks().values())
    (folder / "combined_data_1.txt").write_text("".join(blocks[:4]))
    (folder / "combined_data_2.txt").write_text("".join(blocks[4:]))


@pytest.mark.parametrize("write", [_write_netflix_original, _write_netflix_combined])
def test_netflix_preset_counts_in_both_layouts(tmp_path, write):
    write(tmp_path)
    raw = load_dataset("netflix", data_dir=tmp_path)
    assert _counts(raw) == (7, 6, 35) and raw.explicit
    data = apply_protocol(raw, PAPER_PROTOCOLS["netflix"])
    assert _counts(data) == (4, 5, 20)
    assert list(data.user_ids) == [f"{100_000 + int(u)}" for u in KEPT_USERS]
    assert list(data.item_ids) == ["1", "2", "3", "4", "5"]


def test_netflix_titles_from_the_original_archive(tmp_path):
    _write_netflix_original(tmp_path)
    titles = load_dataset("netflix", data_dir=tmp_path).item_titles
    assert titles == {"1": "Dinosaur Planet (2003)", "2": "Isle of Man TT 2004 Review, Part 2",
                      "6": "Café (1997)"}


# -- MSD: train_triplets.txt ---------------------------------------------------------------------
def _msd_listens():
    """user -> songs. Songs with >= 200 users are kept first, then users with >= 20 of them.

    A (199 users): S01..S21. B (10 users): S01..S19 and R1..R5. C (1 user): S01..S18 and S20.
    Song counts: S01..S18 210, S19 209, S20 200 (kept, at the cut), S21 199 and R* 10 (dropped).
    Then A keeps 20 songs (kept), B and C 19 (dropped): 199 users x 20 songs, 3,980 interactions.
    Filtering users first would keep B (24 songs) and end with 209 users x 19 songs instead.
    """
    songs = [f"S{k:02d}" for k in range(1, 22)]
    listens = {f"a{k:03d}": songs[:21] for k in range(199)}
    listens |= {f"b{k:02d}": songs[:19] + [f"R{j}" for j in range(1, 6)] for k in range(10)}
    listens["c0"] = songs[:18] + ["S20"]
    return listens


def _write_msd(root, extra=""):
    folder = root / "msd"
    folder.mkdir(parents=True)
    lines = [f"{user}\tSO{song}\t{1 + (len(user) + n) % 7}"
             for user, songs in _msd_listens().items() for n, song in enumerate(songs)]
    path = folder / "train_triplets.txt"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def test_msd_preset_counts_songs_first_then_users(tmp_path):
    _write_msd(tmp_path)
    raw = load_dataset("msd", data_dir=tmp_path)
    assert _counts(raw) == (210, 26, 199 * 21 + 10 * 24 + 19) and not raw.explicit
    np.testing.assert_array_equal(raw.matrix.data, 1.0)  # play counts 1..7 binarised
    data = apply_protocol(raw, PAPER_PROTOCOLS["msd"])
    assert _counts(data) == (199, 20, 3_980)
    assert list(data.item_ids) == [f"SOS{k:02d}" for k in range(1, 21)]
    assert all(u.startswith("a") for u in data.user_ids)
    # one pass, as the reference code: S20 ends with 199 listeners (C left) and stays
    assert data.matrix[:, data.item_index["SOS20"]].nnz == 199


def test_environment_variable_names_the_data_folder(tmp_path, monkeypatch):
    _write_msd(tmp_path)
    monkeypatch.setenv("AEREC_DATA_DIR", str(tmp_path))
    assert _counts(_preset("msd", None)) == (199, 20, 3_980)


# -- missing and malformed files -----------------------------------------------------------------
@pytest.mark.parametrize("name, expected, source", [
    ("netflix", "combined_data_*.txt or mv_*.txt or training_set/mv_*.txt",
     "kaggle.com/datasets/netflix-inc/netflix-prize-data"),
    ("msd", "train_triplets.txt", "millionsongdataset.com/tasteprofile"),
])
def test_a_missing_data_set_says_what_to_get_and_where(tmp_path, name, expected, source):
    with pytest.raises(DataError) as info:
        load_dataset(name, data_dir=tmp_path / "data")  # download=True: there is none to try
    message = str(info.value)
    assert "\n" not in message
    assert f"looked for {expected} in {tmp_path / 'data' / name}, {tmp_path / 'cache' / name}" \
        in message
    assert source in message and "AEREC_DATA_DIR" in message


def test_a_missing_ml20m_offers_the_download(tmp_path):
    with pytest.raises(DataError, match=r"looked for ratings\.csv in .*download=True"):
        load_dataset("ml-20m", data_dir=tmp_path / "data", download=False)


def test_an_empty_netflix_folder_is_not_taken(tmp_path):
    (tmp_path / "netflix" / "training_set").mkdir(parents=True)
    (tmp_path / "netflix" / "probe.txt").write_text("1:\n30878\n")
    with pytest.raises(DataError, match="netflix not found"):
        load_dataset("netflix", data_dir=tmp_path)


def test_a_malformed_msd_line_is_named(tmp_path):
    path = _write_msd(tmp_path, extra="a000\tSOS01\tmany\n")
    with pytest.raises(ParseError) as info:
        load_dataset("msd", data_dir=tmp_path)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 4439, "count")
    assert "positive integer" in str(info.value)


def test_a_malformed_netflix_line_is_named(tmp_path):
    _write_netflix_combined(tmp_path)
    path = tmp_path / "netflix" / "combined_data_2.txt"
    path.write_text(path.read_text() + "100001,4\n")
    with pytest.raises(ParseError, match="expected 3 fields") as info:
        load_dataset("netflix", data_dir=tmp_path)
    assert info.value.path == str(path) and info.value.line == len(path.read_text().splitlines())


def test_the_rating_cut_needs_ratings(tmp_path):
    _write_msd(tmp_path)
    with pytest.raises(DataError, match="already implicit"):
        apply_protocol(load_dataset("msd", data_dir=tmp_path), PAPER_PROTOCOLS["ml-20m"])


@pytest.mark.parametrize("text, line, field, message", [
    ("u1\tS1\t3\nu2\tS1\t1\t7\n", 2, None, "expected 3 tab-separated fields"),
    ("u1\tS1\t3\nu2 S1 1\n", 2, None, "found 1"),
    ("u1\tS1\t3\n\tS1\t2\n", 2, "user", "empty user id"),
    ("u1\tS1\t3\r\nu3\t\t2\r\n", 2, "song", "empty song id"),
    ("u1\tS1\t3\n\nu2\tS1\t0\n", 3, "count", "positive integer, got '0'"),
    ("u1\tS1\t1.5\n", 1, "count", "positive integer, got '1.5'"),
])
def test_taste_profile_bad_lines(tmp_path, text, line, field, message):
    path = tmp_path / "train_triplets.txt"
    path.write_bytes(text.encode())
    with pytest.raises(ParseError, match=message) as info:
        read_taste_profile(path)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), line, field)


def test_taste_profile_edges(tmp_path):
    path = tmp_path / "train_triplets.txt"
    path.write_text("")
    with pytest.raises(EmptyDataError):
        read_taste_profile(path)
    with pytest.raises(DataError, match="no such file"):
        read_taste_profile(tmp_path / "nowhere.txt")
    # ids that pandas would take for missing values stay ids; a repeated pair counts once
    path.write_bytes(b"NA\tnull\t1\r\nu2\tnull\t4\r\n\r\nNA\tnull\t2\r\n")
    with pytest.warns(DuplicateInteractionsWarning):
        data = read_taste_profile(path)
    assert list(data.user_ids) == ["NA", "u2"] and list(data.item_ids) == ["null"]
    np.testing.assert_array_equal(data.matrix.toarray(), [[1], [1]])


def test_taste_profile_read_in_small_chunks_is_the_same(tmp_path, monkeypatch):
    path = _write_msd(tmp_path)
    whole = read_taste_profile(path)
    monkeypatch.setattr(msd, "_CHUNK_LINES", 7)  # 634 chunks, ids met again in later ones
    chunked = read_taste_profile(path)
    np.testing.assert_array_equal(chunked.user_ids, whole.user_ids)
    np.testing.assert_array_equal(chunked.item_ids, whole.item_ids)
    assert (chunked.matrix != whole.matrix).nnz == 0 and chunked.nnz == 4_438
