"""Checks that a path given on the command line can be written, made before any work.

A run that trains for an hour and then cannot write its model is an hour lost: ``--out``,
``--markdown`` and ``--plot`` are checked up front, and each problem is one :class:`ConfigError`
that names the path and says what is wrong. The checks are pure: they create nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from aerec.errors import ConfigError

__all__ = ["check_writable_run_dir", "check_writable_file"]

#: Folders of a run directory that must be folders if they exist (``model/``, ``split/``).
RUN_SUBDIRS = ("model", "split")


def check_writable_run_dir(path: str | Path, *, option: str = "--out",
                           subdirs: tuple[str, ...] = RUN_SUBDIRS) -> Path:
    """Check that ``path`` can become (or already is) a run directory that aerec can write.

    Parameters
    ----------
    path : str or Path
        The run directory; it may not exist yet.
    option : str
        The option that named it, for the message.
    subdirs : tuple of str
        Names inside the run directory that must be folders where they exist.

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    ConfigError
        When ``path`` is a file (or ``/dev/null``), holds a file where a folder of the run goes,
        has a name too long for the file system, lies under a file, or lies in a folder that
        cannot be written (permissions, read-only file system).
    """
    path = Path(path)
    _check_names(path, option)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: is a file, not a folder; name a folder for the run")
    if path.is_dir():
        for name in subdirs:
            inner = path / name
            if inner.exists() and not inner.is_dir():
                raise ConfigError(f"{option} {path}: {inner} is a file where the run's {name}/ "
                                  "folder goes; remove it or choose another folder")
    _check_ancestor_writable(path, option)
    return path


def check_writable_file(path: str | Path, *, option: str, overwrite: bool) -> Path:
    """Check that a file can be written at ``path``: the one rule of every ``--out FILE``.

    Parameters
    ----------
    path : str or Path
        The file to write; it may not exist yet.
    option : str
        The option that named it, for the message.
    overwrite : bool
        Whether an existing file may be replaced (``--overwrite``). Without it an existing file
        is refused: a mistyped ``--out`` must not destroy the user's data (the run's own CSV).

    Raises
    ------
    ConfigError
        When ``path`` is a folder (with or without ``overwrite``: a file never replaces a
        folder), an existing file and ``overwrite`` is false, has a name too long for the file
        system, lies under a file, or lies in a folder that cannot be written.
    """
    path = Path(path)
    _check_names(path, option)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise ConfigError(f"{option} {path}: not a regular file")
    if path.exists() and not overwrite:
        raise ConfigError(f"{option} {path}: the file exists; pass --overwrite to replace it, "
                          "or choose another name")
    _check_ancestor_writable(path, option)
    return path


def _check_names(path: Path, option: str) -> None:
    for part in path.parts:
        # 255 bytes is the limit of ext4, XFS, btrfs, APFS and NTFS (in UTF-16 units) alike.
        if len(os.fsencode(part)) > 255:
            parent = Path(*path.parts[:path.parts.index(part)])
            raise ConfigError(f"{option} {parent}/{part[:40]}...: the name has "
                              f"{len(os.fsencode(part))} bytes; file systems allow 255 per name")


def _check_ancestor_writable(path: Path, option: str) -> None:
    """The nearest existing folder above ``path`` (or ``path`` itself) must be writable."""
    existing = path
    while not existing.exists():
        if existing.is_symlink():  # a dangling link: writing through it would fail later
            raise ConfigError(f"{option} {path}: {existing} is a link to nothing")
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise ConfigError(f"{option} {path}: {existing} is a file, not a folder")
    folder = existing if existing.is_dir() else existing.parent
    if _read_only_fs(folder):
        raise ConfigError(f"{option} {path}: {folder} is on a read-only file system")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: no permission to write in {folder}")


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows): os.access answers instead
        return False
