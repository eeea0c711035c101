"""JSON + safetensors persistence: round trips equal to the bit, atomic writes, no pickle."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.config import make_config, parse_assignments
from aerec.errors import ConfigError, DataError
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
    with pytest.raises(DataError, match="x.safetensors"):
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


# -- the read side: files that parse but are wrong ------------------------------------------------
def test_read_json_checks_the_top_level_type(tmp_path):
    from aerec.persistence import read_json

    (tmp_path / "a.json").write_text("[1, 2]")
    assert read_json(tmp_path / "a.json", expect=list) == [1, 2]
    with pytest.raises(DataError, match=r"a\.json: expected a JSON object, found a JSON array"):
        read_json(tmp_path / "a.json", expect=dict)


def test_read_json_refuses_what_is_not_a_small_regular_file(tmp_path):
    from aerec.persistence import read_json

    (tmp_path / "big.json").write_text("[" + "0," * 50 + "0]")
    assert len(read_json(tmp_path / "big.json", max_bytes=200)) == 51
    with pytest.raises(DataError, match="big.json: larger than"):
        read_json(tmp_path / "big.json", max_bytes=100)
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    with pytest.raises(DataError, match="zero.json: not a regular file"):
        read_json(tmp_path / "zero.json")  # would never end if it were read
    with pytest.raises(DataError, match="nope.json: not found"):
        read_json(tmp_path / "nope.json")
    with pytest.raises(DataError, match="is a directory"):
        read_json(tmp_path)


def test_check_fields_names_the_missing_or_mistyped_field(tmp_path):
    from aerec.persistence import check_fields

    fields = {"n": int, "ids": list}
    check_fields({"n": 3, "ids": []}, "x.json", fields)
    with pytest.raises(DataError, match=r"x.json, field 'ids': missing"):
        check_fields({"n": 3}, "x.json", fields)
    with pytest.raises(DataError, match=r"field 'n': must be an integer, found true or false"):
        check_fields({"n": True, "ids": []}, "x.json", fields)
    with pytest.raises(DataError, match=r"field 'ids': must be a JSON array, found a JSON object"):
        check_fields({"n": 1, "ids": {}}, "x.json", fields)


@pytest.mark.parametrize("arrays, message", [
    ({"data": np.array([{"a": 1}], dtype=object)}, "not a saved sparse matrix"),
    ({"indptr": np.array([0, 3, 1, 2], np.int32)}, "inconsistent CSR arrays"),
    ({"data": np.array([np.nan, 1, 1, 1, 1, 1, 1, 1], np.float32)}, "NaN or infinite"),
    ({"data": np.array(["a"] * 8)}, "not numeric CSR arrays"),
    ({"shape": np.array([3])}, "is not that of a matrix"),
])
def test_load_csr_refuses_matrices_that_parse_but_are_wrong(tmp_path, arrays, message):
    m = sp.csr_matrix(np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 1, 0]], np.float32))
    save_csr(tmp_path / "m.npz", m)
    good = dict(np.load(tmp_path / "m.npz", allow_pickle=False))
    np.savez(tmp_path / "m.npz", **{**good, **arrays})
    with pytest.raises(DataError, match=f"m.npz: .*{message}"):
        load_csr(tmp_path / "m.npz")


@pytest.mark.parametrize("skeleton, message", [
    ({"__tensor__": "s.gone"}, "refers to a tensor 's.gone' that the file lacks"),
    ({"__dict__": [["a"]]}, "not a list of pairs"),
    ({"__dict__": [[[1, 2], 3]]}, "a key of the skeleton is a JSON array"),
])
def test_load_state_refuses_a_malformed_skeleton(tmp_path, skeleton, message):
    import json

    from safetensors.torch import save_file

    save_file({"s.a": torch.ones(2)}, str(tmp_path / "s.safetensors"),
              metadata={"skeleton": json.dumps(skeleton), "meta": "{}"})
    with pytest.raises(DataError, match=f"s.safetensors: malformed state metadata: .*{message}"):
        load_state(tmp_path / "s.safetensors")
