"""ONNX export: the file scores as the torch model does (onnxruntime against ``model.score``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aerec.cli import main
from aerec.errors import ConfigError
from aerec.models import ELSA, EASE, SANSA, DeepAutoencoder, MultDAE, MultVAE, RecVAE, UAutoRec
from tiny_runs import make_tiny_run, tiny_interactions

ort = pytest.importorskip(
    "onnxruntime", reason="onnxruntime is not installed (pip install 'aerec[onnx]')")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install 'aerec[onnx]')")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'aerec[onnx]')")

from aerec.onnx_export import export_onnx, onnx_scores  # noqa: E402  (after the skips)

#: The issue's bar: ONNX and torch scores agree to 1e-5, relative to the scores' scale.
RTOL = 1e-5


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """Largest absolute difference over the largest absolute torch score."""
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture(scope="module")
def tiny():
    return tiny_interactions()  # 300 users x 60 items


@pytest.mark.parametrize("make", [
    lambda: MultVAE(epochs=3, hidden="16", latent=8, device="cpu"),
    lambda: MultDAE(epochs=3, latent=8, device="cpu"),
    lambda: RecVAE(epochs=1, hidden=16, latent=8, encoder_layers=2, device="cpu"),
    lambda: UAutoRec(epochs=2, hidden="16", device="cpu"),
    lambda: ELSA(epochs=2, rank=8, device="cpu"),
], ids=["mult-vae", "mult-dae", "recvae", "u-autorec", "elsa"])
def test_onnx_scores_match_torch_on_100_users(tiny, tmp_path, make):
    model = make().fit(tiny)
    path = export_onnx(model, tmp_path / "model.onnx")
    users = tiny.matrix[:100]
    got = onnx_scores(path, users.toarray())
    want = model.score(users)
    assert got.shape == want.shape == (100, tiny.n_items)
    assert _relative_error(got, want) <= RTOL
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * np.abs(want).max())
    # the batch axis is dynamic: one user alone scores as within the batch
    alone = onnx_scores(path, users[5].toarray())
    np.testing.assert_allclose(alone, got[5:6], rtol=1e-6, atol=1e-6)
    proto = onnx.load(path)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["model"] == model.name
    assert json.loads(meta["item_ids"]) == [str(i) for i in model.item_ids_]
    assert [i.name for i in proto.graph.input] == ["history"]
    assert [o.name for o in proto.graph.output] == ["scores"]


@pytest.mark.parametrize("make", [
    lambda: MultVAE(epochs=1, hidden="16", latent=8, device="cpu"),
    lambda: MultDAE(epochs=1, latent=8, device="cpu"),
    lambda: RecVAE(epochs=1, hidden=16, latent=8, encoder_layers=2, device="cpu"),
    lambda: UAutoRec(epochs=1, hidden="16", device="cpu"),
    lambda: DeepAutoencoder(epochs=1, hidden="8", device="cpu"),
], ids=["mult-vae", "mult-dae", "recvae", "u-autorec", "deep-ae"])
def test_every_export_scores_an_empty_history_as_torch_does(tiny, tmp_path, make):
    import scipy.sparse as sp

    from aerec.onnx_export import EXPORTABLE

    model = make().fit(tiny)
    assert model.name in EXPORTABLE
    path = export_onnx(model, tmp_path / "model.onnx")
    batch = tiny.matrix[:3].toarray()
    batch[[0, 2]] = 0.0  # empty rows beside a full one (RecVAE divided 0 by 0 here)
    got = onnx_scores(path, batch)
    want = model.score(sp.csr_matrix(batch))
    assert np.isfinite(want).all() and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * np.abs(want).max())


def test_rating_fallback_is_in_the_graph(tiny, tmp_path):
    model = DeepAutoencoder(epochs=1, hidden="8", device="cpu").fit(tiny)
    model.item_counts_[3] = 0  # as if item 3 had no training ratings
    path = export_onnx(model, tmp_path / "deep.onnx")
    batch = tiny.matrix[:20].toarray()
    batch[0] = 0.0  # an empty history: every score is the training mean
    got = onnx_scores(path, batch)
    np.testing.assert_allclose(got[0], model.global_mean_, rtol=1e-6)
    np.testing.assert_allclose(got[1:, 3], model.global_mean_, rtol=1e-6)
    import scipy.sparse as sp

    want = model.score(sp.csr_matrix(batch))
    assert _relative_error(got, want) <= RTOL


def test_models_without_a_forward_fold_in_are_refused(tiny, tmp_path):
    with pytest.raises(ConfigError, match="ease cannot be exported to ONNX"):
        export_onnx(EASE().fit(tiny), tmp_path / "ease.onnx")
    assert not (tmp_path / "ease.onnx").exists()
    with pytest.raises(ConfigError, match="sansa cannot be exported to ONNX"):
        export_onnx(SANSA(density=0.2).fit(tiny), tmp_path / "sansa.onnx")


def test_cli_export_writes_a_file_that_scores_like_the_run(tmp_path, capsys):
    run = make_tiny_run(tmp_path / "run", model="mult-vae", epochs=3)
    out = tmp_path / "model.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    from aerec.models import Recommender
    from aerec.runs import load_split

    model = Recommender.load(run / "model")
    users = load_split(run / "split").train.matrix[:100]
    assert _relative_error(onnx_scores(out, users.toarray()), model.score(users)) <= RTOL
    assert main(["export", str(run), "--out", str(tmp_path / "missing" / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and "\n" not in err
    assert main(["export", str(run), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    # an existing file is kept unless --overwrite; replaced, it keeps its mode (not 0600)
    out.chmod(0o644)
    before = out.read_bytes()
    assert main(["export", str(run), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == before
    out.write_bytes(b"old")
    assert main(["export", str(run), "--out", str(out), "--overwrite"]) == 0
    assert out.read_bytes() == before and out.stat().st_mode & 0o777 == 0o644
