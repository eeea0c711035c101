"""``aerec similar DIR --item ID``: the items a trained model finds most similar to an item.

``DIR`` is a run directory or a model directory saved from Python (:mod:`aerec.model_source`).
"""

from __future__ import annotations

import argparse
import json
from aerec.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "similar", help="items similar to an item",
        description="Print the items a model finds most similar to each given item (never "
        "the item itself). What 'similar' means depends on the model: the output names it. "
        "DIR is a run directory (aerec train) or a model directory (model.save in Python).",
    )
    p.add_argument("run_dir", metavar="DIR")
    p.add_argument("--item", metavar="ID[,ID...]", action="append", required=True,
                   help="raw item id(s); repeat the option or separate ids by commas")
    p.add_argument("-n", type=int, default=10, help="similar items per item (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: they bring in torch, which `aerec --help` should not wait for.
    from aerec.models.similarity import similarity_definition
    from aerec.model_source import open_model_source

    if args.n < 1:
        raise ConfigError("-n must be at least 1")
    ids = list(dict.fromkeys(
        i.strip() for entry in args.item for i in entry.split(",") if i.strip()))
    if not ids:
        raise ConfigError("--item needs at least one item id")
    source = open_model_source(args.run_dir, device=args.device)
    model, titles = source.model, source.titles
    frame = model.similar_items(ids, n=args.n, titles=titles)
    definition = similarity_definition(model)
    if args.json:
        items = [{"item": i, "title": titles.get(i, ""),
                  "similar": frame[frame["item"] == i].drop(columns="item").to_dict("records")}
                 for i in ids]
        print(json.dumps({"model": model.name, "definition": definition, "items": items}, indent=2))
        return 0
    print(f"{model.name}: {definition}")
    for i in ids:
        print(f"\nsimilar to {i}" + (f"  {titles[i]}" if titles.get(i) else "") + ":")
        rows = frame[frame["item"] == i]
        for rank, row in enumerate(rows.itertuples(index=False), 1):
            title = getattr(row, "title", "")
            print(f"{rank:>3}. {row.similar_item:>8}  {row.score:9.4f}  {title}".rstrip())
    return 0
