"""``aerec recommend DIR``: top-n items for a known user or for any list of items.

``DIR`` is a run directory, or a model directory saved from Python (``model.save``), which keeps
no users and so answers ``--items`` only (:mod:`aerec.model_source`).
"""

from __future__ import annotations

import argparse
import json
import sys

from aerec.errors import ConfigError

#: --fallback's choices (aerec.models.raw_ids.FALLBACKS, which imports torch: not at --help)
FALLBACKS = ("popularity",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recommend", help="recommend items for a user or an item history",
        description="Print the top items for a user of the run (--user) or for a history the "
        "model never saw (--items, folded in without retraining). DIR is a run directory "
        "(aerec train) or a model directory (model.save in Python; --items only).",
    )
    p.add_argument("run_dir", metavar="DIR")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="ID", help="raw id of a user in the run's data")
    who.add_argument("--items", metavar="ID,ID,...",
                     help="raw item ids of a history; ID:RATING gives a rating (rating models; "
                     "without one an item gets the top of the training range)")
    who.add_argument("--all-users", action="store_true",
                     help="every user of the run, written to --out (the same as --users all)")
    who.add_argument("--users", choices=("all", "train", "validation", "test"),
                     help="the users of one part of the run's split, written to --out")
    p.add_argument("-n", type=int, default=10,
                   help="number of items (default 10; fewer when fewer can be recommended)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--out", metavar="FILE", help="with --all-users / --users: the .parquet or "
                   ".csv file to write (columns user, rank, item, score)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--batch-size", type=int, default=1000, metavar="N",
                   help="users scored together when writing --out (default 1000)")
    p.add_argument("--exclude-file", metavar="FILE", help="items never recommended, one id a line")
    p.add_argument("--allow-file", metavar="FILE",
                   help="the only items that may be recommended, one id a line")
    p.add_argument("--fallback", choices=FALLBACKS,
                   help="what a history with no known item gets: by default an error; "
                   "popularity: the items most training users had, marked as such")
    p.add_argument("--quiet", action="store_true", help="no progress bar when writing --out")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # torch: imported by the handler, not by --help
    from aerec.histories import finite_top, history_from_items, known_user_history
    from aerec.model_source import open_model_source
    from aerec.models.raw_ids import empty_history_error

    if args.n < 1:
        raise ConfigError("-n must be at least 1")
    export = args.all_users or args.users is not None
    if export != (args.out is not None):
        raise ConfigError("--out goes with --all-users or --users (and they need it)")
    if export:  # before the run is read or any user scored
        from aerec.export import export_format
        from aerec.paths import check_writable_file

        check_writable_file(args.out, option="--out", overwrite=args.overwrite)
        export_format(args.out)
    source = open_model_source(args.run_dir, device=args.device)
    model = source.model
    if export:
        what = "--all-users" if args.all_users else f"--users {args.users}"
        split = source.require_run(what)
        return _export(args, model, split, _item_filter(args, model))
    if args.user is not None:
        source.require_run("--user")
    filt = _item_filter(args, model)
    unknown: list[str] = []
    if args.user is not None:
        # the user's whole row (training and validation items), all excluded from the answer
        history = known_user_history(source.split, args.user)
    else:
        ids = [i.strip() for i in args.items.split(",") if i.strip()]
        if not ids:
            raise ConfigError("--items needs at least one item id")
        history, unknown = history_from_items(model, ids)
    fallback = args.fallback if history.nnz == 0 else None
    if history.nnz == 0 and fallback is None:
        raise empty_history_error(unknown, hint="--fallback popularity")
    if fallback is None:
        top, scores = model.recommend_filtered(history, n=args.n, item_filter=filt)
    else:
        top, scores = model.recommend_popular(args.n, filt)
    top, scores = finite_top(top[0], scores[0])
    titles = source.titles
    rows = [{"item": str(model.item_ids_[i]), "score": float(s),
             "title": titles.get(str(model.item_ids_[i]), "")}
            for i, s in zip(top.tolist(), scores.tolist())]
    if args.json:
        # allow_nan=False: a non-finite score must fail loudly, never print bare NaN
        print(json.dumps({"recommendations": rows, "unknown_items": unknown,
                          "fallback": fallback}, indent=2, allow_nan=False))
        return 0
    if unknown:
        print(f"unknown items ignored: {', '.join(unknown)}")
    if fallback is not None:
        print(f"no item of the history is known to the model: the most popular items instead "
              f"(--fallback {fallback}; the score is the number of training users)")
    print(f"{'rank':>4} {'item':>8}  {'score':>9}  title")
    for rank, row in enumerate(rows, 1):
        print(f"{rank:>3}. {row['item']:>8}  {row['score']:9.4f}  {row['title']}")
    return 0


def _item_filter(args: argparse.Namespace, model):
    """The --exclude-file / --allow-file filter; ids the model does not know are said on stderr."""
    from aerec.export import read_id_list
    from aerec.models.raw_ids import item_filter, shown_ids

    exclude = None if args.exclude_file is None else read_id_list(args.exclude_file)
    allow = None if args.allow_file is None else read_id_list(args.allow_file)
    if allow == []:
        raise ConfigError(f"--allow-file {args.allow_file}: holds no item ids")
    filt = item_filter(model.item_ids_, exclude, allow)
    for option, path, unknown in (("--exclude-file", args.exclude_file, filt.unknown_exclude),
                                  ("--allow-file", args.allow_file, filt.unknown_allow)):
        if unknown:
            print(f"aerec recommend: warning: {option} {path}: ignored {len(unknown)} id(s) the "
                  f"model does not know: {shown_ids(unknown)}", file=sys.stderr)
    return filt


def _export(args: argparse.Namespace, model, split, filt) -> int:
    """--all-users / --users: every chosen user's top -n to --out, with a progress bar."""
    from tqdm.auto import tqdm

    from aerec.export import export_recommendations, split_users

    users = split_users(split, "all" if args.all_users else args.users)
    bars = []

    def progress(done: int) -> None:
        # The bar starts with the first batch written, so an unwritable --out stays one line.
        if not bars:
            bars.append(tqdm(total=users.n_users, unit="user", file=sys.stderr,
                             dynamic_ncols=True, disable=args.quiet))
        bars[0].update(done)

    try:
        summary = export_recommendations(model, users, args.out, args.n, item_filter=filt,
                                         batch_size=args.batch_size, on_batch=progress)
    finally:
        for bar in bars:
            bar.close()
    excluded = "every item of the user in the run's data (test targets included)"
    if args.json:
        print(json.dumps({"out": str(summary.path), "users": summary.users, "rows": summary.rows,
                          "excluded": excluded}))
    else:
        print(f"wrote {summary.rows} rows for {summary.users} users to {summary.path}; "
              f"excluded: {excluded}")
    return 0
