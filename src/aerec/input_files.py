"""Checks on a file a user names for reading, made before it is read.

A path from the command line may name anything: ``/dev/zero`` (read for ever), a FIFO (waits for
ever), a folder, a binary file given where a list of ids belongs, or a file far larger than any
such list. Each is one :class:`DataError` naming the file, before a byte is parsed, so that every
read stays bounded in time and memory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from aerec.errors import DataError

__all__ = ["MAX_ID_LIST_BYTES", "check_input_file", "read_text_lines"]

#: The largest id list (``--exclude-file``, ``--allow-file``) read: a million 60-byte ids.
MAX_ID_LIST_BYTES = 64 * 2**20
#: Bytes at the start of a text file searched for a NUL, which no text file holds.
_SNIFF_BYTES = 64 * 1024


def check_input_file(path: str | Path, *, text: bool = True, max_bytes: int | None = None) -> Path:
    """``path`` as a Path, once it is known to be a regular file that can be read in bounds.

    Parameters
    ----------
    path : str or Path
        The file.
    text : bool
        Whether it must be text: a NUL byte in its first 64 KiB (a binary file) is refused.
    max_bytes : int, optional
        The largest size accepted.

    Raises
    ------
    DataError
        For a missing path, a folder, a device or FIFO, a file over ``max_bytes``, or a binary
        file where text is expected, naming the file.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError("is a folder, not a file", path=path)
    if not stat.S_ISREG(info.st_mode):
        raise DataError("not a regular file (a device, FIFO or socket is never read)", path=path)
    if max_bytes is not None and info.st_size > max_bytes:
        raise DataError(f"is {info.st_size / 2**20:.0f} MiB; at most {max_bytes / 2**20:.0f} MiB "
                        "is read", path=path)
    if text:
        with open(path, "rb") as fh:
            if b"\0" in fh.read(_SNIFF_BYTES):
                raise DataError("is a binary file, not text", path=path)
    return path


def read_text_lines(path: str | Path, *, max_bytes: int | None = None) -> list[str]:
    """The lines of a small UTF-8 text file (at most ``max_bytes``, default
    :data:`MAX_ID_LIST_BYTES`), checked by :func:`check_input_file` first.

    Raises
    ------
    DataError
        As :func:`check_input_file`, or for bytes that are not UTF-8 (line named).
    """
    max_bytes = MAX_ID_LIST_BYTES if max_bytes is None else max_bytes
    path = check_input_file(path, max_bytes=max_bytes)
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)  # the file may have grown since it was checked
    if len(data) > max_bytes or b"\0" in data:
        raise DataError("is not a small text file (too large, or binary)", path=path)
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, 1):
        try:
            lines[number - 1] = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"not valid UTF-8 ({exc.reason})", path=path, line=number) from None
    return lines
