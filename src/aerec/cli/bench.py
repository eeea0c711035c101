"""``aerec bench``: time a training epoch, an evaluation or an EASE fit against the GEMM floor."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time training / evaluation against the hardware's floor")
    p.set_defaults(handler=lambda args: 0)
