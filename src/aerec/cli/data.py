"""``aerec data``: data utilities. ``aerec data synth`` writes synthetic interactions to a file."""

from __future__ import annotations

import argparse
import json
import time

from aerec.data.synth_spec import FORMATS, SHAPES, SynthParams


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="data utilities (synthetic data)",
                       description="Data utilities.")
    actions = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    s = actions.add_parser(
        "synth", help="write synthetic interactions (power-law items, lognormal users)",
        description="Write synthetic interactions with power-law item popularity and lognormal "
        "user activity, deterministic under --seed, in a format the readers load: "
        + "; ".join(f"{k}: {v}" for k, v in FORMATS.items()) + ".",
    )
    s.add_argument("--out", required=True, metavar="FILE", help="file to write")
    s.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    s.add_argument("--format", choices=sorted(FORMATS), default=None,
                   help="file format (default: from the suffix .csv, .tsv, .parquet, .txt)")
    s.add_argument("--shape", choices=sorted(SHAPES), default=None,
                   help="named size; --users/--items/--interactions override its fields")
    s.add_argument("--users", type=int, help="number of users")
    s.add_argument("--items", type=int, help="number of items")
    s.add_argument("--interactions", type=int, help="number of interactions (met exactly)")
    kind = s.add_mutually_exclusive_group()
    kind.add_argument("--explicit", dest="explicit", action="store_true", default=None,
                      help="ratings 1..5 with timestamps")
    kind.add_argument("--implicit", dest="explicit", action="store_false",
                      help="presence only (the default unless the shape has ratings)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    defaults = SynthParams()
    s.add_argument("--item-exponent", type=float, default=defaults.item_exponent,
                   help=f"power-law exponent of item popularity (default {defaults.item_exponent})")
    s.add_argument("--item-offset", type=float, default=defaults.item_offset,
                   help=f"rank offset of the shifted power law (default {defaults.item_offset})")
    s.add_argument("--activity-sigma", type=float, default=defaults.activity_sigma,
                   help=f"sigma of the lognormal user activity (default {defaults.activity_sigma})")
    s.add_argument("--min-user", type=int, default=defaults.min_user,
                   help=f"fewest interactions per user (default {defaults.min_user})")
    s.add_argument("--clusters", type=int, default=defaults.n_clusters,
                   help=f"taste groups of items (default {defaults.n_clusters})")
    s.add_argument("--affinity", type=float, default=defaults.affinity,
                   help="share of a user's items drawn from its favourite group "
                   f"(default {defaults.affinity})")
    s.add_argument("--json", action="store_true", help="print what was written as JSON")
    s.set_defaults(handler=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    # NumPy and pandas: imported by the handler, not by --help. Sizes whose memory estimate
    # exceeds what the machine has are refused there before any work (synth_spec.check_memory).
    from aerec.data.synthetic import write_synthetic
    from aerec.paths import check_writable_file

    check_writable_file(args.out, option="--out", overwrite=args.overwrite)
    params = SynthParams(
        item_exponent=args.item_exponent, item_offset=args.item_offset,
        activity_sigma=args.activity_sigma, min_user=args.min_user, n_clusters=args.clusters,
        affinity=args.affinity,
    )
    started = time.perf_counter()
    shape = write_synthetic(
        args.out, args.shape, file_format=args.format, n_users=args.users, n_items=args.items,
        n_interactions=args.interactions, explicit=args.explicit, seed=args.seed, params=params,
    )
    summary = {"path": str(args.out), "users": shape.n_users, "items": shape.n_items,
               "interactions": shape.n_interactions, "explicit": shape.explicit,
               "seed": args.seed, "seconds": round(time.perf_counter() - started, 2)}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {shape.n_interactions:,} {'ratings' if shape.explicit else 'interactions'} "
              f"of {shape.n_users:,} users x {shape.n_items:,} items to {args.out} "
              f"in {summary['seconds']} s")
    return 0
