"""The models of aerec and their registry (name -> class)."""

from __future__ import annotations

from aerec.errors import ConfigError
from aerec.models.base import Recommender
from aerec.models.vae import MultDAE, MultVAE

#: Every model the CLI and the persistence layer know, by name.
REGISTRY: dict[str, type[Recommender]] = {
    MultVAE.name: MultVAE,
    MultDAE.name: MultDAE,
}


def get_model_class(name: str) -> type[Recommender]:
    """The class registered as ``name``; ConfigError listing the valid names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; valid models: {', '.join(sorted(REGISTRY))}"
        ) from None


__all__ = ["REGISTRY", "Recommender", "MultVAE", "MultDAE", "get_model_class"]
