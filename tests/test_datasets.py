"""Data sets by name: the registry, finding, downloading from a local server, and the real data."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from aerec.data import datasets
from aerec.data.datasets import DATASETS, find_dataset, load_dataset
from aerec.errors import ConfigError, DataError, DownloadError

U_DATA = "1\t10\t4\t300\n2\t10\t2\t100\n1\t20\t5\t200\n"
U_ITEM = "10|Toy Story (1995)|01-Jan-1995||http://x|0\n20|Señor (1996)|01-Jan-1996||http://y|1\n"


@pytest.fixture
def clean_env(monkeypatch):
    """No AEREC_* variable of the machine may steer these tests."""
    for name in ("AEREC_DATA_DIR", "AEREC_CACHE_DIR", "AEREC_DOWNLOAD_URL"):
        monkeypatch.delenv(name, raising=False)


def _serve_ml100k(root: Path, members: dict[str, bytes] | None = None,
                  md5: str | None = None) -> str:
    """Put a tiny ml-100k.zip and its .md5 beside it on the server; return the zip's MD5."""
    members = members or {"ml-100k/u.data": U_DATA.encode(),
                          "ml-100k/u.item": U_ITEM.encode("latin-1")}
    with zipfile.ZipFile(root / "ml-100k.zip", "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    digest = hashlib.md5((root / "ml-100k.zip").read_bytes()).hexdigest()
    (root / "ml-100k.zip.md5").write_text(f"MD5 (ml-100k.zip) = {md5 or digest}\n")
    return digest


@pytest.fixture
def sidecar_checked(monkeypatch):
    """Check ml-100k against the served .md5 file instead of the real archive's pinned MD5."""
    monkeypatch.setitem(DATASETS, "ml-100k", dataclasses.replace(DATASETS["ml-100k"], md5=None))


def _files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# -- the registry --------------------------------------------------------------------------------
MOVIELENS = ("ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-latest-small")


def test_registry_points_at_grouplens():
    assert set(DATASETS) == {*MOVIELENS, "netflix", "msd"}
    for name in MOVIELENS:
        spec = DATASETS[name]
        assert spec.url(datasets.DEFAULT_BASE_URL) == (
            f"https://files.grouplens.org/datasets/movielens/{name}.zip")
        assert spec.md5 is None or re.fullmatch(r"[0-9a-f]{32}", spec.md5)
    assert DATASETS["ml-10m"].folder == "ml-10M100K"
    assert DATASETS["ml-latest-small"].md5 is None  # regenerated upstream: checked by sidecar
    for name in ("netflix", "msd"):  # no checkable official download: read from a folder
        assert DATASETS[name].archive is None
        with pytest.raises(ConfigError, match="not downloaded"):
            DATASETS[name].url(datasets.DEFAULT_BASE_URL)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="ml-100k, ml-1m, .*netflix, msd"):
        find_dataset("ml-2m")
    with pytest.raises(ConfigError, match="known:"):
        load_dataset("Netflix")


# -- finding -------------------------------------------------------------------------------------
def test_data_dir_argument_then_environment(tmp_path, monkeypatch, clean_env):
    (tmp_path / "data" / "ml-100k").mkdir(parents=True)
    (tmp_path / "data" / "ml-100k" / "u.data").write_text(U_DATA)
    found = find_dataset("ml-100k", data_dir=tmp_path / "data", cache_dir=tmp_path / "c",
                         download=False)
    assert found == tmp_path / "data" / "ml-100k"
    monkeypatch.setenv("AEREC_DATA_DIR", str(tmp_path / "data"))
    assert find_dataset("ml-100k", cache_dir=tmp_path / "c", download=False) == found


def test_the_zip_folder_name_is_found_too(tmp_path, clean_env):
    (tmp_path / "ml-10M100K").mkdir()
    (tmp_path / "ml-10M100K" / "ratings.dat").write_text("1::2::3::4\n")
    assert find_dataset("ml-10m", data_dir=tmp_path, cache_dir=tmp_path / "c",
                        download=False) == tmp_path / "ml-10M100K"


def test_not_found_without_download_says_where_it_looked(tmp_path, monkeypatch, clean_env):
    monkeypatch.setenv("AEREC_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError) as info:
        find_dataset("ml-1m", data_dir=tmp_path / "data", download=False)
    message = str(info.value)
    assert str(tmp_path / "data" / "ml-1m") in message
    assert str(tmp_path / "cache" / "ml-1m") in message
    assert "AEREC_DATA_DIR" in message and "download" in message


# -- downloading from a local server -------------------------------------------------------------
def test_download_lands_in_cache_loads_and_is_not_repeated(
        http_server, tmp_path, clean_env, sidecar_checked):
    base, root, requested = http_server
    _serve_ml100k(root)
    cache = tmp_path / "cache"
    data = load_dataset("ml-100k", cache_dir=cache, base_url=base, progress=False)
    assert requested == ["/ml-100k.zip.md5", "/ml-100k.zip"]
    assert _files_under(cache) == ["ml-100k", "ml-100k/u.data", "ml-100k/u.item"]
    np.testing.assert_array_equal(data.user_ids, ["1", "2"])
    np.testing.assert_array_equal(data.item_ids, ["10", "20"])
    np.testing.assert_array_equal(data.matrix.toarray(), [[4, 5], [2, 0]])
    assert data.item_titles == {"10": "Toy Story (1995)", "20": "Señor (1996)"}

    again = load_dataset("ml-100k", cache_dir=cache, base_url=base, progress=False)
    assert len(requested) == 2
    assert again.nnz == 3


def test_pinned_md5_needs_no_sidecar_and_env_sets_the_url(
        http_server, tmp_path, monkeypatch, clean_env):
    base, root, requested = http_server
    digest = _serve_ml100k(root)
    monkeypatch.setitem(DATASETS, "ml-100k", dataclasses.replace(DATASETS["ml-100k"], md5=digest))
    monkeypatch.setenv("AEREC_DOWNLOAD_URL", base + "/")
    monkeypatch.setenv("AEREC_CACHE_DIR", str(tmp_path / "cache"))
    assert find_dataset("ml-100k", progress=False) == tmp_path / "cache" / "ml-100k"
    assert requested == ["/ml-100k.zip"]


def test_real_pinned_md5_rejects_another_archive(http_server, tmp_path, clean_env):
    base, root, _ = http_server
    _serve_ml100k(root)
    with pytest.raises(DownloadError, match="0e33842e24a9c977be4e0107933c0723"):
        find_dataset("ml-100k", cache_dir=tmp_path / "cache", base_url=base, progress=False)
    assert _files_under(tmp_path / "cache") == []


def test_wrong_checksum_leaves_no_partial_files(http_server, tmp_path, clean_env, sidecar_checked):
    base, root, _ = http_server
    _serve_ml100k(root, md5="0" * 32)
    with pytest.raises(DownloadError, match="md5"):
        find_dataset("ml-100k", cache_dir=tmp_path / "cache", base_url=base, progress=False)
    assert _files_under(tmp_path / "cache") == []


def test_zip_slip_archive_is_refused(http_server, tmp_path, clean_env, sidecar_checked):
    base, root, _ = http_server
    _serve_ml100k(root, {"ml-100k/u.data": U_DATA.encode(), "../../evil.txt": b"pwned"})
    with pytest.raises(DownloadError, match="outside"):
        find_dataset("ml-100k", cache_dir=tmp_path / "cache", base_url=base, progress=False)
    assert _files_under(tmp_path / "cache") == []
    assert not list(tmp_path.rglob("evil.txt"))


def test_archive_without_the_ratings_file(http_server, tmp_path, clean_env, sidecar_checked):
    base, root, _ = http_server
    _serve_ml100k(root, {"ml-100k/README": b"hello"})
    with pytest.raises(DownloadError, match="u.data"):
        find_dataset("ml-100k", cache_dir=tmp_path / "cache", base_url=base, progress=False)
    assert _files_under(tmp_path / "cache") == []


def test_unreachable_server(tmp_path, clean_env):
    with pytest.raises(DownloadError, match="could not"):
        find_dataset("ml-100k", cache_dir=tmp_path / "cache", base_url="http://127.0.0.1:9",
                     progress=False)


# -- the real data -------------------------------------------------------------------------------
def test_real_ml100k(shared_data_dir, tmp_path):
    data = load_dataset("ml-100k", data_dir=shared_data_dir, cache_dir=tmp_path, download=False)
    assert (data.nnz, data.n_users, data.n_items) == (100_000, 943, 1_682)
    assert data.explicit and data.timestamps is not None
    assert set(np.unique(data.matrix.data)) == {1, 2, 3, 4, 5}
    assert data.item_titles["1"] == "Toy Story (1995)"


def test_real_ml_latest_small(shared_data_dir, tmp_path):
    data = load_dataset("ml-latest-small", data_dir=shared_data_dir, cache_dir=tmp_path,
                        download=False)
    assert (data.nnz, data.n_users, data.n_items) == (100_004, 671, 9_066)
    assert data.explicit and data.matrix.data.min() == 0.5
    assert data.item_titles["1"] == "Toy Story (1995)"
