"""aerec: autoencoder recommenders for collaborative filtering.

Mult-VAE and Mult-DAE (Liang et al. 2018), AutoRec (Sedhain et al. 2015), the deep autoencoder of
Kuchaiev & Ginsburg (2017), EASE and RecVAE, with the papers' evaluation protocols.
"""

__version__ = "0.1.0"
