"""JSON + safetensors persistence: round trips equal to the bit, atomic writes, no pickle."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.config import make_config, parse_assignments
from aerec.errors import ConfigError
from aerec.models.vae import MultVAEConfig
from aerec.persistence import load_csr, load_state, save_csr, save_state, write_json


def test_nested_state_round_trip_is_exact(tmp_path):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    rng = np.random.default_rng(11)
    rng.random(5)
    state = {"opt": opt.state_dict(), "gen": torch.Generator().manual_seed(3).get_state(),
             "rng": rng.bit_generator.state, "x": 0.1 + 0.2, "nan": None, "list": [1, (2, 3)]}
    save_state(tmp_path / "s.safetensors", state, metadata={"model": "m"})
    back, meta = load_state(tmp_path / "s.safetensors")
    assert meta == {"model": "m"}
    assert back["x"] == 0.1 + 0.2 and back["list"] == [1, [2, 3]]
    assert back["rng"] == rng.bit_generator.state
    assert torch.equal(back["gen"], state["gen"])
    assert set(back["opt"]["state"]) == {0, 1}  # integer keys survive JSON
    for k in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(back["opt"]["state"][0][k], opt.state_dict()["state"][0][k])
    opt.load_state_dict(back["opt"])


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "s.safetensors"
    save_state(path, {"a": torch.ones(2)})
    import aerec.persistence as p

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(p, "save_file", boom)
    with pytest.raises(OSError):
        save_state(path, {"a": torch.zeros(2)})
    assert torch.equal(load_state(path)[0]["a"], torch.ones(2))
    assert [f.name for f in tmp_path.iterdir()] == ["s.safetensors"]


def test_a_file_that_is_not_ours_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="x.safetensors"):
        load_state(bad)


def test_csr_round_trip(tmp_path):
    m = sp.random(7, 5, density=0.4, format="csr", random_state=1, dtype=np.float32)
    save_csr(tmp_path / "m.npz", m)
    back = load_csr(tmp_path / "m.npz")
    assert (back != m).nnz == 0 and back.dtype == np.float32


def test_write_json_is_atomic_and_readable(tmp_path):
    write_json(tmp_path / "a.json", {"k": [1, 2]})
    assert (tmp_path / "a.json").read_text().startswith("{")


def test_config_conversion_from_strings():
    cfg = make_config(MultVAEConfig, parse_assignments(
        ["epochs=50", "hidden=600,300", "anneal_epochs=none", "likelihood=gaussian", "lr=1e-4"]))
    assert cfg.epochs == 50 and cfg.hidden == (600, 300) and cfg.anneal_epochs is None
    assert cfg.likelihood == "gaussian" and cfg.lr == 1e-4


@pytest.mark.parametrize("bad, message", [
    (["epochs=ten"], "epochs must be an integer"),
    (["epochs=2.5"], "epochs must be an integer"),
    (["likelihood=poisson"], "likelihood must be one of"),
    (["dropout=1.5"], "dropout"),
    (["nope=1"], "unknown hyperparameter.*valid names: .*anneal_cap"),
])
def test_bad_hyperparameters_are_named(bad, message):
    with pytest.raises(ConfigError, match=message):
        make_config(MultVAEConfig, parse_assignments(bad))


def test_assignment_without_equals_sign():
    with pytest.raises(ConfigError, match="name=value"):
        parse_assignments(["epochs"])


def test_tensors_sharing_storage_are_saved_apart(tmp_path):
    w = torch.arange(6.0).reshape(2, 3)
    save_state(tmp_path / "tied.safetensors", {"w": w, "again": w, "row": w[0]})
    back, _ = load_state(tmp_path / "tied.safetensors")
    assert torch.equal(back["w"], w) and torch.equal(back["again"], w)
    assert torch.equal(back["row"], w[0])
