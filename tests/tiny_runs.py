"""A small run directory with a known answer, for the serving, report and browser tests.

Three genres of 20 items each ("Space Saga 1".."20", "Love Story ...", "Night Horror ..."); every
user likes 6 to 12 items of one genre. A model trained on it should recommend, for a history of
space films, the other space films first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import aerec
from aerec.data.interactions import Interactions
from aerec.data.splits import strong_generalization
from aerec.persistence import write_json
from aerec.runs import RUN_FORMAT, save_split, train_run

GENRES = ("Space Saga", "Love Story", "Night Horror")
PER_GENRE = 20
#: Within a genre, earlier items are more popular (so that training keeps improving validation).
WITHIN_GENRE = 0.88 ** np.arange(PER_GENRE) / (0.88 ** np.arange(PER_GENRE)).sum()


def item_id(genre: int, k: int) -> str:
    """Raw id of the k-th item (0-based) of a genre: 100, 101, ... (numbers, as in MovieLens)."""
    return str(100 + genre * PER_GENRE + k)


def tiny_interactions(n_users: int = 300, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        genre = u % len(GENRES)
        size = int(rng.integers(6, 13))
        for k in rng.choice(PER_GENRE, size=size, replace=False, p=WITHIN_GENRE):
            users.append(f"u{u}")
            items.append(item_id(genre, int(k)))
    titles = {item_id(g, k): f"{name} {k + 1}" for g, name in enumerate(GENRES)
              for k in range(PER_GENRE)}
    return Interactions.from_arrays(np.array(users), np.array(items), item_titles=titles)


def write_fake_ml100k(data_dir: Path, n_users: int = 300) -> Path:
    """The tiny genres data in ML-100K's layout (``ml-100k/u.data``, ``u.item``) under ``data_dir``.

    Lets the command line (``--data ml-100k --data-dir DATA_DIR``) read it like the real release.
    Every rating is 5, so the usual binarisation (> 3.5) keeps them all.
    """
    data = tiny_interactions(n_users)
    folder = Path(data_dir) / "ml-100k"
    folder.mkdir(parents=True, exist_ok=True)
    rows, cols = data.matrix.nonzero()
    lines = [f"{data.user_ids[r].removeprefix('u')}\t{data.item_ids[c]}\t5\t{900000000 + k}"
             for k, (r, c) in enumerate(zip(rows.tolist(), cols.tolist()))]
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    (folder / "u.item").write_text("".join(
        f"{i}|{t}|01-Jan-1995||http://example.invalid/|0\n" for i, t in data.item_titles.items()),
        encoding="latin-1")
    return folder


def make_tiny_run(run_dir: Path, *, model: str = "mult-vae", epochs: int = 15,
                  dataset: str = "tiny-genres", params: dict | None = None) -> Path:
    """Split the tiny data, write a run directory and train it (a second or two); ``params``
    replaces the hyperparameters (for models other than the VAEs)."""
    run_dir = Path(run_dir)
    given_params = params
    split = strong_generalization(tiny_interactions(), 30, seed=1)
    save_split(split, run_dir / "split")
    params = {"epochs": epochs, "batch_size": 64, "device": "cpu", "hidden": "32",
              "latent": 8, "anneal_epochs": 10.0, "seed": 3, "lr": 0.01}
    if model == "mult-dae":
        params = {k: v for k, v in params.items() if k not in ("hidden", "anneal_epochs")}
    if given_params is not None:
        params = given_params
    write_json(run_dir / "run.json", {
        "format": RUN_FORMAT, "model": model, "params": params,
        "data": {"dataset": dataset}, "preprocess": {},
        "split": {"kind": "strong", "n_heldout": 30, "seed": 1},
        "versions": {"aerec": aerec.__version__},
    })
    train_run(run_dir)
    return run_dir


#: The item of :func:`make_edge_run` that only the test file names (no training interaction).
UNTRAINED_ITEM = "999"


def make_edge_run(run_dir: Path, *, ratings: bool = False) -> Path:
    """A run at the edges: a given split of the tiny genres whose test file also names
    :data:`UNTRAINED_ITEM` (kept, as LightGCN keeps such items), trained with EASE, or with a
    one-epoch deep autoencoder on ratings 1 to 5 when ``ratings``.
    """
    import warnings

    from aerec.data.splits import given_split
    from aerec.models import EASE, DeepAutoencoder

    data = tiny_interactions(n_users=90)
    rows, cols, _, _ = data.to_arrays()
    rng = np.random.default_rng(5)
    values = (rng.integers(1, 6, len(rows)) if ratings else np.ones(len(rows))).astype(np.float32)
    users, items = data.user_ids[rows], data.item_ids[cols]
    is_test = rng.random(len(rows)) < 0.2
    titles = {**data.item_titles, UNTRAINED_ITEM: "Untrained Film"}
    train = Interactions.from_arrays(users[~is_test], items[~is_test],
                                     values[~is_test] if ratings else None, item_titles=titles)
    test = Interactions.from_arrays(
        np.r_[users[is_test], [users[is_test][0]]], np.r_[items[is_test], [UNTRAINED_ITEM]],
        np.r_[values[is_test], [5.0]].astype(np.float32) if ratings else None)
    with warnings.catch_warnings():  # the untrained item's test interaction is said in a warning
        warnings.simplefilter("ignore")
        split = given_split(train, test, validation_fraction=0.25, seed=2,
                            unseen_test_items="keep")
    model = (DeepAutoencoder(epochs=1, hidden="8", device="cpu") if ratings
             else EASE(lam=50.0)).fit(split.train)
    run_dir = Path(run_dir)
    save_split(split, run_dir / "split")
    model.save(run_dir / "model")
    write_json(run_dir / "run.json", {
        "format": RUN_FORMAT, "model": model.name, "params": model.get_params(),
        "data": {"dataset": "tiny-genres"}, "preprocess": {}, "split": {"kind": "given"},
        "versions": {"aerec": aerec.__version__}})
    return run_dir
