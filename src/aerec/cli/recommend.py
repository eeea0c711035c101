"""``aerec recommend RUN_DIR``: top-n items for a known user or for any list of items."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aerec.errors import ConfigError
from aerec.models import Recommender
from aerec.runs import items_history, load_split, read_run, user_history


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recommend", help="recommend items for a user or an item history",
        description="Print the top items for a user of the run (--user) or for a history the "
        "model never saw (--items, folded in without retraining).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="ID", help="raw id of a user in the run's data")
    who.add_argument("--items", metavar="ID,ID,...",
                     help="raw item ids of a history; ID:RATING gives a rating (rating models)")
    p.add_argument("-n", type=int, default=10, help="number of items (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise ConfigError("-n must be at least 1")
    run_dir = Path(args.run_dir)
    read_run(run_dir)
    split = load_split(run_dir / "split")
    model = Recommender.load(run_dir / "model", device=args.device)
    unknown: list[str] = []
    if args.user is not None:
        history = user_history(split, args.user).matrix
    else:
        ids = [i.strip() for i in args.items.split(",") if i.strip()]
        if not ids:
            raise ConfigError("--items needs at least one item id")
        history, unknown = items_history(model, ids)
    top, scores = model.recommend(history, n=args.n)
    titles = split.train.item_titles
    rows = [{"item": str(model.item_ids_[i]), "score": float(s),
             "title": titles.get(str(model.item_ids_[i]), "")}
            for i, s in zip(top[0], scores[0])]
    if args.json:
        print(json.dumps({"recommendations": rows, "unknown_items": unknown}, indent=2))
        return 0
    if unknown:
        print(f"unknown items ignored: {', '.join(unknown)}")
    for rank, row in enumerate(rows, 1):
        print(f"{rank:>3}. {row['item']:>8}  {row['score']:9.4f}  {row['title']}")
    return 0
