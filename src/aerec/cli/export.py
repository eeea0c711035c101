"""``aerec export DIR --format onnx --out FILE``: a model's scoring, for other runtimes.

``DIR`` is a run directory or a model directory saved from Python (:mod:`aerec.model_source`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aerec.errors import ConfigError

FORMATS = ("onnx",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a model's fold-in scoring (ONNX)",
        description="Write the model of a run directory (aerec train) or a model directory "
        "(model.save in Python) as an ONNX graph: a dense float32 batch of histories "
        "(batch x items, columns in the model's item order, stored in the file's metadata) in, "
        "item scores out. Needs the onnx extra: pip install 'aerec[onnx]'.",
    )
    p.add_argument("run_dir", metavar="DIR")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="file format (onnx)")
    p.add_argument("--out", metavar="FILE", required=True, help="file to write, e.g. model.onnx")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: they bring in torch, which `aerec --help` should not wait for.
    from aerec.model_source import open_model_source
    from aerec.onnx_export import export_onnx

    out = Path(args.out)
    _check_writable(out, args.overwrite)
    model = open_model_source(args.run_dir, device="cpu").model
    export_onnx(model, out)  # an OSError while writing: aerec.cli.main says it in one line
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): {model.name}, "
          f"input 'history' (batch x {model.n_items_}), output 'scores'")
    return 0


def _check_writable(out: Path, overwrite: bool) -> None:
    """ConfigError before any work when ``out`` cannot be written."""
    from aerec.paths import check_writable_file

    check_writable_file(out, option="--out", overwrite=overwrite)
    # Export makes no folders: a missing one is more likely a typo than a wish.
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: the folder {out.parent} does not exist")
