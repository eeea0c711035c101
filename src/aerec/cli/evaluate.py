"""``aerec evaluate RUN_DIR``: re-evaluate a saved run on its test users."""

from __future__ import annotations

import argparse
from typing import Any

from aerec.cli.common import print_metrics
from aerec.errors import ConfigError
from aerec.metric_names import RANKING_METRICS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a run's model on its test users",
                       description="Load RUN_DIR's model and split, and print the test metrics.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--ks", metavar="K,K,...",
                   help="cut-offs of a ranking run (default 10,20,50,100)")
    p.add_argument("--metrics", metavar="NAME,NAME,...",
                   help="metrics of a ranking run, from: " + ", ".join(RANKING_METRICS)
                   + " (default recall,truncated_recall,ndcg)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from aerec.runs import evaluate_run  # torch: imported by the handler, not by --help

    options: dict[str, Any] = {}
    if args.ks is not None:
        options["ks"] = parse_ks(args.ks)
    if args.metrics is not None:
        options["metrics"] = parse_metrics(args.metrics)
    print_metrics(evaluate_run(args.run_dir, device=args.device, **options), as_json=args.json)
    return 0


def parse_ks(text: str) -> tuple[int, ...]:
    """``"10,20"`` -> ``(10, 20)``, or a one-line ConfigError."""
    try:
        ks = tuple(int(part) for part in text.split(","))
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1:
        raise ConfigError(
            f"--ks {text!r}: expected positive integers separated by commas, e.g. 10,20,50,100"
        )
    return ks


def parse_metrics(text: str) -> tuple[str, ...]:
    """``"recall,map"`` -> ``("recall", "map")``; a one-line ConfigError lists the valid names."""
    names = tuple(part.strip() for part in text.split(","))
    for name in names:
        if name not in RANKING_METRICS:
            raise ConfigError(f"--metrics: unknown metric {name!r}; "
                              f"valid names: {', '.join(RANKING_METRICS)}")
    return names
