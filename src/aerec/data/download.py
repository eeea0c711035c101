"""Downloads that leave either a verified, complete file or nothing.

A download is streamed into a temporary file beside its destination and moved into place only
once its checksum matches; an archive is extracted into a temporary sibling folder and renamed
into place. An interruption or a mismatch therefore never leaves a partial file that a later run
could take for a good one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from aerec.errors import DownloadError
from aerec.file_modes import new_file_mode

__all__ = ["download_file", "extract_zip", "fetch_md5"]

_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60
_MD5_TEXT = re.compile(r"\b[0-9a-fA-F]{32}\b")


def download_file(
    url: str,
    dest: str | Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest``, verifying its checksum before it appears there.

    Parameters
    ----------
    url : str
        What to download (``http(s)://`` or ``file://``).
    dest : str or Path
        Where the file ends; its folder is created if needed.
    md5, sha256 : str, optional
        Expected hex digests; each one given is checked.
    progress : bool
        Show a progress bar (only on a terminal).

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    DownloadError
        If the download fails or a checksum does not match; nothing is then left at ``dest``
        or beside it.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    given = {"md5": md5, "sha256": sha256}
    expected = {name: digest.lower() for name, digest in given.items() if digest}
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digests = _stream(url, out, list(expected), progress)
        _verify(url, expected, digests)
        os.chmod(tmp, new_file_mode())  # mkstemp's 0600 would survive the rename
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _stream(url: str, out, algorithms: list[str], progress: bool) -> dict[str, str]:
    """Copy ``url`` into ``out`` chunk by chunk; return the hex digests asked for."""
    hashes = {name: hashlib.new(name) for name in algorithms}
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                      disable=not (progress and sys.stderr.isatty())) as bar:
                while chunk := response.read(_CHUNK_BYTES):
                    out.write(chunk)
                    for h in hashes.values():
                        h.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(
            f"could not download {url}: {exc}. Check the network, or download the file yourself "
            "and point AEREC_DATA_DIR at it"
        ) from exc
    return {name: h.hexdigest() for name, h in hashes.items()}


def _verify(url: str, expected: dict[str, str], actual: dict[str, str]) -> None:
    for name, digest in expected.items():
        if actual[name] != digest:
            raise DownloadError(
                f"{name} of {url} is {actual[name]}, expected {digest}: the download is corrupt "
                "or the file changed upstream; nothing was kept"
            )


def fetch_md5(url: str) -> str:
    """The MD5 digest published beside ``url`` as ``<url>.md5`` (GroupLens' convention).

    Both the BSD (``MD5 (f.zip) = <hex>``) and the GNU (``<hex>  f.zip``) layouts are understood.

    Raises
    ------
    DownloadError
        If the sidecar cannot be fetched or holds no digest.
    """
    sidecar = f"{url}.md5"
    try:
        with urllib.request.urlopen(sidecar, timeout=_TIMEOUT_S) as response:
            text = response.read(4096).decode("ascii", errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"could not fetch the checksum {sidecar}: {exc}") from exc
    match = _MD5_TEXT.search(text)
    if match is None:
        raise DownloadError(f"{sidecar} holds no MD5 digest")
    return match.group(0).lower()


def extract_zip(
    zip_path: str | Path, target_dir: str | Path, *, subfolder: str | None = None
) -> Path:
    """Extract a zip archive so that ``target_dir`` appears complete or not at all.

    Parameters
    ----------
    zip_path : str or Path
        The archive.
    target_dir : str or Path
        The folder to create; it must not exist yet (an empty one is replaced).
    subfolder : str, optional
        A folder inside the archive whose contents become ``target_dir`` (MovieLens archives hold
        one top folder, ``ml-10m.zip`` for instance holds ``ml-10M100K/``). By default the whole
        archive becomes ``target_dir``.

    Returns
    -------
    Path
        ``target_dir``.

    Raises
    ------
    DownloadError
        If the archive is unreadable, has an entry with an absolute path or ``..`` (it would write
        outside ``target_dir``: "zip slip"), lacks ``subfolder``, or ``target_dir`` exists and is
        not empty.
    """
    target = Path(target_dir)
    _make_room(target)
    staging = Path(
        tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".extract")
    )
    try:
        with _open_zip(zip_path) as archive:
            for name in archive.namelist():
                _check_member(zip_path, name)
            archive.extractall(staging)
        source = staging / subfolder if subfolder else staging
        if not source.is_dir():
            raise DownloadError(f"{zip_path} has no folder {subfolder!r}")
        os.replace(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _make_room(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        else:
            raise DownloadError(f"{target} exists already; remove it to extract there again")


def _open_zip(zip_path: str | Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DownloadError(f"{zip_path} is not a readable zip archive: {exc}") from exc


def _check_member(zip_path: str | Path, name: str) -> None:
    """Refuse entries that would land outside the extraction folder."""
    posix = name.replace("\\", "/")
    parts = PurePosixPath(posix).parts
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix) or ".." in parts:
        raise DownloadError(
            f"{zip_path} has an entry {name!r} that points outside the folder it is extracted to; "
            "refusing to extract it"
        )
