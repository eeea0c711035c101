"""``aerec evaluate RUN_DIR``: re-evaluate a saved run on its test users."""

from __future__ import annotations

import argparse

from aerec.cli.common import print_metrics
from aerec.runs import evaluate_run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a run's model on its test users",
                       description="Load RUN_DIR's model and split, and print the test metrics.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    print_metrics(evaluate_run(args.run_dir, device=args.device), as_json=args.json)
    return 0
