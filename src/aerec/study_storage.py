"""Optuna storages for :mod:`aerec.tuning`: opened with one clear error for each way a storage
URL can be wrong, and shared safely by sessions that start at the same moment."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from aerec.errors import ConfigError
from aerec.extras import require
from aerec.persistence import first_line

__all__ = ["open_study", "storage_errors", "check_storage"]

_SQLITE_MAGIC = b"SQLite format 3\x00"


@contextmanager
def storage_errors(url: str | None) -> Iterator[None]:
    """Turn the ways an Optuna storage URL can fail to open into one :class:`ConfigError` each.

    Checked up front for SQLite (the usual case): a folder that does not exist, a folder given as
    the database, a file that is not an SQLite database. Raised while opening, for any URL: an
    unknown scheme, a driver that is not installed, a database that cannot be opened. A password
    in the URL is never shown.
    """
    if url is None:
        yield
        return
    shown = _shown(url)
    _check_sqlite_file(url, shown)
    import sqlalchemy.exc

    try:
        yield
    except ImportError as exc:
        # Optuna re-raises the driver's ImportError with a generic message: name the module.
        missing = getattr(exc.__cause__ or exc.__context__ or exc, "name", None)
        detail = f"no module named {missing!r}" if missing else first_line(exc)
        raise ConfigError(f"--storage {shown}: the database driver for it is not installed "
                          f"({detail})") from None
    except sqlalchemy.exc.NoSuchModuleError:
        scheme = url.split(":", 1)[0]
        raise ConfigError(f"--storage {shown}: unknown database kind {scheme!r} (use e.g. "
                          "sqlite:///study.db, postgresql://..., mysql://...)") from None
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(f"--storage {shown}: not a database URL (e.g. sqlite:///study.db)"
                          ) from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        detail = first_line(getattr(exc, "orig", None) or exc)
        raise ConfigError(f"--storage {shown}: cannot be opened ({detail})") from None
    except RuntimeError as exc:  # Optuna: a schema of another Optuna version
        raise ConfigError(f"--storage {shown}: {first_line(exc)}") from None
    except ValueError as exc:  # Optuna: a kind it no longer opens by URL (redis://)
        raise ConfigError(f"--storage {shown}: cannot be used ({first_line(exc)}); use "
                          "sqlite:///study.db, postgresql://... or mysql://...") from None


def _shown(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given (no password to find)
        return url


def _check_sqlite_file(url: str, shown: str) -> None:
    path = _sqlite_path(url)
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"--storage {shown}: {path} is a folder, not a database file")
    if not path.parent.is_dir():
        raise ConfigError(f"--storage {shown}: the folder {path.parent} does not exist")
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as fh:
            if fh.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
                raise ConfigError(f"--storage {shown}: {path} is not an SQLite database")


def check_storage(url: str | None) -> None:
    """Open the storage once (creating an empty SQLite database), so that a bad ``--storage``
    is refused before the data is split; ``ConfigError`` as :func:`storage_errors` says."""
    if url is None:
        return
    optuna = require("optuna", "tune", "tuning")
    with storage_errors(url), schema_lock(url):
        optuna.storages.get_storage(url)


@contextmanager
def schema_lock(url: str | None) -> Iterator[None]:
    """Hold an exclusive lock on ``DATABASE.lock`` beside an SQLite database while its tables
    may be created: two sessions that open a new database at once would otherwise both create
    the schema, and the loser fails with what reads like a corrupt database. Other storages
    (a database server serialises its own DDL) and systems without ``fcntl`` take no lock."""
    database = _sqlite_path(url)
    try:
        import fcntl
    except ImportError:  # Windows
        fcntl = None
    if database is None or fcntl is None:
        yield
        return
    with open(database.with_name(database.name + ".lock"), "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # released when the file is closed
        yield


def _sqlite_path(url: str | None) -> Path | None:
    """The file of an ``sqlite:///`` URL, or None (another storage, or in memory)."""
    if url is None or not url.startswith("sqlite:///"):
        return None
    database = url[len("sqlite:///"):].split("?", 1)[0]
    return Path(database) if database and database != ":memory:" else None


def open_study(storage: str | None, study_name: str, direction: str, pruner: Any,
               attempts: int = 5) -> tuple[Any, Any]:
    """Open (or create) a study in an Optuna storage.

    Two sessions that start together on a new storage race to create its tables and the study;
    the loser gets an error from the database and tries again, finding them made.

    Parameters
    ----------
    storage : str or None
        An Optuna storage URL; ``None`` keeps the study in memory.
    study_name, direction, pruner
        As for :func:`optuna.create_study`.
    attempts : int
        Tries before an error of the database is passed on (call inside :func:`storage_errors`).

    Returns
    -------
    (storage, optuna.study.Study)
    """
    optuna = require("optuna", "tune", "tuning")
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            with schema_lock(storage):
                store = optuna.storages.get_storage(storage)
                return store, optuna.create_study(study_name=study_name, storage=store,
                                                  direction=direction, load_if_exists=True,
                                                  pruner=pruner)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")
