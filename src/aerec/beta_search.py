"""The beta search of the Mult-VAE paper (Liang et al. 2018, section 2.2.2 and figure 1).

Instead of searching the KL weight's cap with many trainings, the paper trains once while beta
grows from 0 to 1, records the validation NDCG@100 after each epoch, takes the beta of the best
epoch, and trains again with the same annealing schedule but beta stopped at that value.

Here: one Mult-VAE training with ``anneal_cap = 1`` and an anneal length of ``anneal_epochs``
(by default the number of epochs, so beta reaches 1 at the end), one record per epoch of the
epoch's beta (the mean of the values its updates used) and validation NDCG@100; the chosen beta is
the one of the first epoch with the highest NDCG. :func:`aerec.runs.beta_search_run` does this for a prepared
run directory, writes ``beta_search.json`` and ``beta_search.png`` there, and puts the chosen beta
(``anneal_cap``) and the anneal length (``anneal_epochs``) into the run's ``run.json`` params, so
that the training that follows is the paper's second training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from aerec.errors import ConfigError
from aerec.models.vae import MultVAE
from aerec.training import Trainer

__all__ = ["BetaSearch", "search_beta", "plot_beta_search", "check_beta_search"]

#: The figure recorded per epoch, and its name in the training history.
METRIC = "ndcg@100"
_HISTORY_KEY = f"val_{METRIC}"


@dataclass(frozen=True)
class BetaSearch:
    """What a beta search found.

    Attributes
    ----------
    records : list of dict
        One per epoch: ``epoch``, ``beta``, ``val_ndcg@100``.
    best_beta, best_epoch, best_ndcg :
        The record with the highest validation NDCG@100 (the first such).
    anneal_epochs : float or None
        The anneal length (epochs for beta to go from 0 to 1) of the search and of the retraining;
        None when the parameters gave an explicit ``total_anneal_steps``, which both keep.
    """

    records: list[dict[str, float]]
    best_beta: float
    best_epoch: int
    best_ndcg: float
    anneal_epochs: float | None

    def to_json(self) -> dict[str, Any]:
        return {"best_beta": self.best_beta, "best_epoch": self.best_epoch,
                "best_val_ndcg@100": self.best_ndcg, "anneal_epochs": self.anneal_epochs,
                "records": self.records}

    def retraining_params(self) -> dict[str, Any]:
        """The hyperparameters the second training takes from the search: beta capped at the
        chosen value, over the search's anneal length."""
        if self.anneal_epochs is None:
            return {"anneal_cap": self.best_beta}
        return {"anneal_cap": self.best_beta, "anneal_epochs": self.anneal_epochs}


def search_beta(
    train: Any,
    validation: Any,
    params: dict[str, Any] | None = None,
    *,
    callbacks: Sequence[Callable[[dict[str, Any]], None]] = (),
    progress: bool = False,
    distributed: bool | None = None,
) -> BetaSearch:
    """Train Mult-VAE once with beta annealed to 1; return the per-epoch curve and the best beta.

    Parameters
    ----------
    train : Interactions or scipy.sparse.csr_matrix
        Training users.
    validation : HeldOut
        Validation users (required: the search is over their NDCG@100).
    params : dict, optional
        Mult-VAE hyperparameters; ``anneal_cap`` is replaced by 1. The anneal length is the
        parameters' own when they give one (``anneal_epochs``, or an explicit
        ``total_anneal_steps``), else ``epochs`` (beta reaches 1 at the end).
    distributed : bool, optional
        As :class:`~aerec.training.Trainer`'s: False trains in this process alone even where a
        process group is initialised (a run's preparation, on rank 0 only).
    """
    if validation is None:
        raise ConfigError("the beta search needs validation users")
    params = dict(params or {})
    config = MultVAE(**params).config
    explicit_steps = config.anneal_epochs is None and config.total_anneal_steps != "auto"
    if explicit_steps:  # the user's anneal length, as asked for
        anneal_epochs = None
        model = MultVAE(**{**params, "anneal_cap": 1.0})
    else:
        anneal_epochs = float(config.anneal_epochs if config.anneal_epochs is not None
                              else config.epochs)
        model = MultVAE(**{**params, "anneal_cap": 1.0, "anneal_epochs": anneal_epochs})
    Trainer(callbacks=tuple(callbacks), progress=progress, distributed=distributed).fit(
        model, train, validation)
    records = [{"epoch": int(h["epoch"]), "beta": float(h["beta"]), METRIC: float(h[_HISTORY_KEY])}
               for h in model.history_]
    if not records:
        raise ConfigError("the beta search needs at least one epoch (epochs >= 1)")
    best = max(records, key=lambda r: r[METRIC])  # max keeps the first of equal values
    return BetaSearch(records, best["beta"], best["epoch"], best[METRIC], anneal_epochs)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("the beta search plot needs matplotlib: pip install aerec[plot]") from None
    matplotlib.use("Agg")  # files only; never opens a window
    import matplotlib.pyplot as plt

    return plt


def plot_beta_search(search: BetaSearch, path: str | Path) -> None:
    """Save the validation NDCG@100 against beta (the paper's figure 1) as a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    try:
        betas = [r["beta"] for r in search.records]
        ndcgs = [r[METRIC] for r in search.records]
        ax.plot(betas, ndcgs, marker=".", linewidth=1)
        ax.axvline(search.best_beta, color="tab:red", linestyle="--", linewidth=1,
                   label=f"best beta = {search.best_beta:.3f} (epoch {search.best_epoch})")
        ax.set_xlabel("beta (KL weight, annealed)")
        ax.set_ylabel("validation NDCG@100")
        ax.set_title("Mult-VAE beta search")
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def check_beta_search(model_name: str) -> None:
    """Fail early (before any data is prepared) when a beta search cannot run."""
    if model_name != MultVAE.name:
        raise ConfigError(f"--beta-search is for {MultVAE.name} only, not {model_name}")
    _pyplot()


