"""The ``aerec`` command line: the only place that reads ``sys.argv``.

Each subcommand lives in its own module with ``register(subparsers)``; the list below is the
registry. Errors that aerec raises on purpose are printed on one line, with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from aerec import __version__
from aerec.errors import AerecError

#: Subcommand modules, in the order ``aerec --help`` lists them.
COMMAND_MODULES = [
    "aerec.cli.train",
    "aerec.cli.evaluate",
    "aerec.cli.recommend",
    "aerec.cli.data",
    "aerec.cli.bench",
    "aerec.cli.tune",
    "aerec.cli.report",
    "aerec.cli.serve",
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="aerec",
        description="Autoencoder recommenders for collaborative filtering.",
    )
    parser.add_argument("--version", action="version", version=f"aerec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``aerec`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    warnings.filterwarnings("ignore", message="Sparse invariant checks")
    try:
        return int(args.handler(args) or 0)
    except AerecError as exc:
        print(f"aerec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"aerec {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
