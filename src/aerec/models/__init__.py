"""The models of aerec and their registry (name -> class)."""

from __future__ import annotations

from aerec.errors import ConfigError
from aerec.models.base import Recommender
from aerec.models.vae import MultDAE, MultVAE
from aerec.models.ease import EASE
from aerec.models.edlae import EDLAE
from aerec.models.popularity import Popularity
from aerec.models.sansa import SANSA
from aerec.models.elsa import ELSA
from aerec.models.recvae import RecVAE
from aerec.models.autorec import IAutoRec, UAutoRec
from aerec.models.deep_ae import DeepAutoencoder
from aerec.models.mf import BiasedMF
from aerec.models.blend import Blend

#: Every model the CLI and the persistence layer know, by name.
REGISTRY: dict[str, type[Recommender]] = {
    MultVAE.name: MultVAE,
    MultDAE.name: MultDAE,
    EASE.name: EASE,
    EDLAE.name: EDLAE,
    RecVAE.name: RecVAE,
    Popularity.name: Popularity,
    SANSA.name: SANSA,
    ELSA.name: ELSA,
    IAutoRec.name: IAutoRec,
    UAutoRec.name: UAutoRec,
    DeepAutoencoder.name: DeepAutoencoder,
    BiasedMF.name: BiasedMF,
    Blend.name: Blend,
}


def get_model_class(name: str) -> type[Recommender]:
    """The class registered as ``name``; ConfigError listing the valid names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; valid models: {', '.join(sorted(REGISTRY))}"
        ) from None


__all__ = ["REGISTRY", "Recommender", "MultVAE", "MultDAE", "EASE", "EDLAE", "RecVAE", "Popularity", "SANSA", "ELSA",
           "IAutoRec", "UAutoRec", "DeepAutoencoder", "BiasedMF", "Blend",
           "get_model_class"]
