"""Downloads and extraction leave a complete, verified result or nothing at all."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from aerec.data.download import download_file, extract_zip, fetch_md5
from aerec.errors import DownloadError

PAYLOAD = b"1\t1\t5\t874965758\n" * 1000


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verifies_and_lands(http_server, tmp_path):
    base, root, requested = http_server
    (root / "f.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "f.bin"
    result = download_file(f"{base}/f.bin", dest, md5=hashlib.md5(PAYLOAD).hexdigest(),
                           sha256=hashlib.sha256(PAYLOAD).hexdigest().upper(), progress=False)
    assert result == dest and dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["f.bin"]
    assert requested == ["/f.bin"]


def test_download_with_a_wrong_checksum_leaves_nothing(http_server, tmp_path):
    base, root, _ = http_server
    (root / "f.bin").write_bytes(PAYLOAD)
    out = tmp_path / "out"
    with pytest.raises(DownloadError, match="md5 .* expected 0{32}"):
        download_file(f"{base}/f.bin", out / "f.bin", md5="0" * 32, progress=False)
    with pytest.raises(DownloadError, match="sha256"):
        download_file(f"{base}/f.bin", out / "f.bin", sha256="0" * 64, progress=False)
    assert _leftovers(out) == []


def test_download_of_a_missing_file_leaves_nothing(http_server, tmp_path):
    base, _, _ = http_server
    with pytest.raises(DownloadError, match="404"):
        download_file(f"{base}/missing.zip", tmp_path / "out" / "m.zip", progress=False)
    assert _leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("text", [
    "MD5 (ml-100k.zip) = 0E33842E24A9C977BE4E0107933C0723\n",
    "0e33842e24a9c977be4e0107933c0723  ml-100k.zip\n",
])
def test_fetch_md5_reads_bsd_and_gnu_layouts(http_server, text):
    base, root, _ = http_server
    (root / "ml-100k.zip.md5").write_text(text)
    assert fetch_md5(f"{base}/ml-100k.zip") == "0e33842e24a9c977be4e0107933c0723"


def test_fetch_md5_errors(http_server):
    base, root, _ = http_server
    (root / "a.zip.md5").write_text("no digest here\n")
    with pytest.raises(DownloadError, match="no MD5"):
        fetch_md5(f"{base}/a.zip")
    with pytest.raises(DownloadError, match="b.zip.md5"):
        fetch_md5(f"{base}/b.zip")


def _zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


def test_extract_zip_subfolder_becomes_target(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"ml-10M100K/ratings.dat": "1::2::3::4\n",
                                       "ml-10M100K/movies.dat": "2::T::G\n"})
    target = extract_zip(archive, tmp_path / "cache" / "ml-10m", subfolder="ml-10M100K")
    assert sorted(p.name for p in target.iterdir()) == ["movies.dat", "ratings.dat"]
    assert _leftovers(tmp_path / "cache") == ["ml-10m"]


@pytest.mark.parametrize("evil", ["../evil.txt", "data/../../evil.txt", "/tmp/evil.txt",
                                  "..\\evil.txt", "C:/evil.txt"])
def test_extract_zip_refuses_zip_slip(tmp_path, evil):
    archive = _zip(tmp_path / "a.zip", {"data/ok.txt": "ok", evil: "pwned"})
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="outside"):
        extract_zip(archive, cache / "data")
    assert _leftovers(cache) == []
    assert not (tmp_path / "evil.txt").exists()


def test_extract_zip_errors_leave_nothing(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"ml-1m/ratings.dat": "1::2::3::4\n"})
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="no folder 'ml-20m'"):
        extract_zip(archive, cache / "x", subfolder="ml-20m")
    assert _leftovers(cache) == []
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(DownloadError, match="not a readable zip"):
        extract_zip(tmp_path / "bad.zip", cache / "x")
    assert _leftovers(cache) == []
    (cache / "full").mkdir()
    (cache / "full" / "keep.txt").write_text("mine")
    with pytest.raises(DownloadError, match="exists already"):
        extract_zip(archive, cache / "full")
    assert _leftovers(cache / "full") == ["keep.txt"]
