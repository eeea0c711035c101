"""The ``aerec`` command line: the only place that reads ``sys.argv``.

Each subcommand lives in its own module with ``register(subparsers)``; the list below is the
registry. Registering imports nothing heavy (no torch, no numpy): each handler imports what it
needs, so that ``--help`` and argument errors answer at once.

Errors end a command with one line on stderr, never a traceback:

* errors that aerec raises on purpose (bad data, options, files): exit status 2;
* an operating-system error on a path (permission denied, read-only file system, name too long,
  not a directory, ...): exit status 2, naming the path; a full disk or an I/O error: exit
  status 1, since the input was not at fault;
* running out of memory: exit status 1;
* a closed output pipe (``aerec evaluate RUN | head``): no message, exit status 141 (128 +
  SIGPIPE, what the shell reports for a program killed by a broken pipe);
* Ctrl-C: exit status 130.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import warnings

from aerec import __version__
from aerec.errors import AerecError

#: Subcommand modules, in the order ``aerec --help`` lists them; the command is the last part.
COMMAND_MODULES = [
    "aerec.cli.train",
    "aerec.cli.evaluate",
    "aerec.cli.recommend",
    "aerec.cli.similar",
    "aerec.cli.data",
    "aerec.cli.bench",
    "aerec.cli.tune",
    "aerec.cli.report",
    "aerec.cli.serve",
    "aerec.cli.export",
]

#: OS errors that say nothing about the input: the machine ran out of room or failed.
_MACHINE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``command``, only that subcommand is registered.

    Registering one subcommand keeps ``aerec CMD --help`` and argument errors from importing the
    other subcommands' modules.
    """
    parser = argparse.ArgumentParser(
        prog="aerec",
        description="Autoencoder recommenders for collaborative filtering.",
    )
    parser.add_argument("--version", action="version", version=f"aerec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        if command is None or name.rsplit(".", 1)[1] == command:
            importlib.import_module(name).register(sub)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` if it is a known one (the first word not an option)."""
    known = {name.rsplit(".", 1)[1] for name in COMMAND_MODULES}
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in known else None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``aerec`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    warnings.filterwarnings("ignore", message="Sparse invariant checks")
    prefix = f"aerec {args.command}: error:"
    shown = warnings.showwarning
    warnings.showwarning = _one_line_warning(args.command)
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe is handled, not at interpreter exit
        return code
    except AerecError as exc:
        print(f"{prefix} {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"aerec {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except OSError as exc:
        print(f"{prefix} {describe_os_error(exc)}", file=sys.stderr)
        return 1 if exc.errno in _MACHINE_ERRNOS else 2
    except MemoryError as exc:
        detail = f" ({exc})" if str(exc) else ""
        print(f"{prefix} out of memory{detail}; try smaller sizes or a larger machine",
              file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = shown


def _one_line_warning(command: str):
    """A ``warnings.showwarning`` that prints ``aerec CMD: warning: MESSAGE`` on one line: the
    source line and file of the code that warned say nothing to a user of the command."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        print(f"aerec {command}: warning: {text}", file=sys.stderr if file is None else file)

    return show


def describe_os_error(exc: OSError) -> str:
    """One line for an OS error: the path(s) it concerns and the system's reason."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += " (files aerec writes are replaced whole or not at all: earlier versions are kept)"
    paths = [os.fsdecode(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def _silence_stdout() -> None:
    # The reader is gone: point stdout at /dev/null so that the interpreter's final flush does not
    # raise a second BrokenPipeError (and print "Exception ignored ...") at exit.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a descriptor (captured in tests)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
