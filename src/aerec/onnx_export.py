"""ONNX export of an autoencoder's fold-in scoring: a dense history batch in, item scores out.

The exported graph is the fitted network's evaluation path, unchanged: the model's own input
normalisation, encoder and decoder (no dropout, no sampling: Mult-VAE and RecVAE decode the
posterior mean), run on a dense ``float32`` input of shape ``(batch, n_items)`` whose columns are
in the order of the model's ``item_ids_``. The batch axis is dynamic. The output ``scores`` has
the same shape and equals :meth:`~aerec.models.base.Recommender.score` (tested to 1e-5
relative); the user's own items are *not* masked, as ``score`` does not mask them either. The
graph computes in float32 throughout, also for a model trained with ``precision="bf16"`` (whose
torch scoring multiplies in bf16, so the two then differ by bf16 rounding).

Exported: Mult-VAE, Mult-DAE, RecVAE, and the rating autoencoders whose fold-in is one forward
pass (U-AutoRec, the deep autoencoder), with their fallback rating (the training mean for items
without training ratings and for empty histories) built into the graph. Not exported: EASE and
EDLAE (their scoring is one product with the weights ``B``, which any runtime does without ONNX),
I-AutoRec and biased MF (their fold-in solves a ridge regression per user), blends.

The graph carries ``item_ids`` (a JSON list), ``model`` and ``aerec_version`` as metadata, so a
server can map columns to raw ids without the run directory.

The exporter is ``torch.onnx.export(..., dynamo=True)``, the one PyTorch maintains (the
TorchScript exporter is deprecated since 2.9); it runs offline and needs ``onnxscript``, which
the ``onnx`` extra installs with ``onnx`` and ``onnxruntime``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import aerec
from aerec.errors import ConfigError
from aerec.extras import require
from aerec.persistence import atomic_write_bytes

#: Models whose fold-in scoring is one forward pass of their network, hence exportable.
EXPORTABLE = ("mult-vae", "mult-dae", "recvae", "u-autorec", "deep-ae", "elsa")
#: ONNX operator set of the exported graphs (onnxruntime 1.18 and later run it).
OPSET = 18
INPUT_NAME = "history"
OUTPUT_NAME = "scores"


class DenseBatch:
    """A dense ``(batch, n_items)`` history that answers what the models' scoring paths ask of a
    :class:`~aerec.models.sparse.SparseBatch`.

    The models read ``values`` (the stored entries), scale them by ``norms[rows]`` (each entry's
    row) and multiply with ``matmul``. Here ``values`` is the whole dense matrix, whose zeros add
    nothing to a norm or a product, and ``rows`` indexes a per-row vector as a column, so the same
    code runs densely and can be traced.
    """

    rows = (slice(None), None)

    def __init__(self, history: torch.Tensor) -> None:
        self.values = history

    @property
    def n_rows(self) -> int:
        return self.values.shape[0]

    def row_l2_norms(self) -> torch.Tensor:
        return torch.linalg.vector_norm(self.values, dim=1)

    def matmul(self, values: torch.Tensor, weight: torch.Tensor, *,
               row_sparse_grad: bool = False) -> torch.Tensor:
        # row_sparse_grad is the training input's gradient layout: no gradient flows here.
        return values @ weight


class FoldInScorer(nn.Module):
    """Dense history batch -> item scores, through a fitted model's own evaluation path.

    Parameters
    ----------
    model : TorchRecommender
        A fitted model named in :data:`EXPORTABLE`.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        check_exportable(model)
        self.network = model.module_
        self._forward_scores = model._forward_scores
        self.rating = not model.implicit
        if self.rating:
            self.register_buffer("unrated", torch.from_numpy(model.item_counts_ == 0))
            self.fallback = float(model.global_mean_)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        scores = self._forward_scores(self.network, DenseBatch(history))
        if self.rating:  # as ExplicitModel.score_tensor: the training mean where nothing is known
            empty = (history != 0).sum(dim=1, keepdim=True) == 0
            fallback = torch.full_like(scores, self.fallback)
            scores = torch.where(self.unrated | empty, fallback, scores)
        return scores


def check_exportable(model: Any) -> None:
    """ConfigError unless ``model`` is fitted and its fold-in is a single forward pass."""
    model._check_fitted()
    if model.name not in EXPORTABLE:
        raise ConfigError(
            f"{model.name} cannot be exported to ONNX (its fold-in is not one forward pass of a "
            f"network); exportable models: {', '.join(EXPORTABLE)}"
        )


def export_onnx(model: Any, path: str | Path) -> Path:
    """Write ``model``'s fold-in scoring as an ONNX file.

    Parameters
    ----------
    model : Recommender
        A fitted model named in :data:`EXPORTABLE`.
    path : str or Path
        The ``.onnx`` file to write (atomically: readers never see half a file).

    Returns
    -------
    Path
        ``path``. The graph's input is ``history`` (float32, batch x n_items), its output
        ``scores`` (float32, batch x n_items).
    """
    require("onnx", "onnx", "ONNX export")
    require("onnxscript", "onnx", "ONNX export")
    scorer = FoldInScorer(model)
    device = next(scorer.network.parameters()).device
    was_training = scorer.network.training
    scorer.to("cpu").eval()  # the graph is device-neutral; trace it on the CPU
    example = torch.zeros(2, model.n_items_)
    example[:, 0] = 1.0
    batch = torch.export.Dim("batch", min=1)
    try:
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(
                scorer, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes={"history": {0: batch}}, opset_version=OPSET, dynamo=True,
                verbose=False, optimize=True)
    finally:
        scorer.network.to(device).train(was_training)  # the model's own network, as it was
    proto = program.model_proto
    metadata = {"model": model.name, "aerec_version": aerec.__version__,
                "item_ids": json.dumps([str(i) for i in model.item_ids_])}
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    path = Path(path)
    atomic_write_bytes(path, proto.SerializeToString())
    return path


@contextlib.contextmanager
def _quiet_exporter():
    """Silence what the exporter says about itself (torchvision ops it skips, deprecations in
    its own internals): nothing a user can act on. Restored afterwards."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def onnx_scores(path: str | Path, history: np.ndarray) -> np.ndarray:
    """Scores of a dense float32 history batch by the ONNX file at ``path``, in onnxruntime."""
    ort = require("onnxruntime", "onnx", "Running an ONNX export")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(history, np.float32)})[0]
