"""Model and state files: self-describing, exact round trips, clear errors, atomic writes."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from ncacli.engine import NCA, ModelConfig, make_seed
from ncacli.errors import NcaError
from ncacli.io.files import atomic_write_bytes
from ncacli.io.model_file import load_model, save_model
from ncacli.io.state_file import parse_state, state_bytes


def trained_like(seed: int = 0) -> NCA:
    torch.manual_seed(seed)
    model = NCA(ModelConfig(hidden=24, perception="sobel_laplacian"))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model


def test_save_load_reproduces_the_rollout_bit_for_bit(tmp_path):
    model = trained_like()
    path = tmp_path / "m.safetensors"
    save_model(model, path, {"preset": "growing", "iterations": 3})
    loaded, provenance = load_model(str(path))
    assert loaded.config == model.config and provenance["iterations"] == 3
    seed = make_seed(2, 16, 24, 24)
    with torch.no_grad():
        a = model.rollout(seed, 40, torch.Generator().manual_seed(7))
        b = loaded.rollout(seed, 40, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_model_file_is_self_describing(tmp_path):
    from safetensors import safe_open

    path = tmp_path / "m.safetensors"
    save_model(trained_like(), path, {"target": "emoji 🦎"})
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "nca-model" and meta["format_version"] == "2"
    spec = json.loads(meta["spec"])
    assert spec["model"]["perception"] == "sobel_laplacian" and spec["task"]["name"] == "image"
    assert json.loads(meta["provenance"])["toolkit_version"]


def test_truncated_foreign_and_missing_model_files(tmp_path):
    good = tmp_path / "m.safetensors"
    save_model(trained_like(), good, {})
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(NcaError, match="t.safetensors: .*truncated"):
        load_model(str(truncated))
    foreign = tmp_path / "f.safetensors"
    save_file({"weight": torch.zeros(3)}, str(foreign))
    with pytest.raises(NcaError, match="f.safetensors: a safetensors file without nca metadata, not an nca model"):
        load_model(str(foreign))
    junk = tmp_path / "j.safetensors"
    junk.write_bytes(b"PK\x03\x04 this is a zip")
    with pytest.raises(NcaError, match="j.safetensors: not a safetensors file"):
        load_model(str(junk))
    with pytest.raises(NcaError, match="nope.safetensors: file not found"):
        load_model(str(tmp_path / "nope.safetensors"))


def test_state_round_trip_and_wrong_kind():
    state = torch.randn(2, 16, 5, 7)
    back, step = parse_state(state_bytes(state, step=12), "s")
    assert torch.equal(back, state) and step == 12
    from ncacli.io.model_file import model_bytes as to_bytes
    from ncacli.spec import ModelSpec, TaskSpec

    model = trained_like()
    model_bytes = to_bytes(model, ModelSpec(model.config, TaskSpec()), {})
    with pytest.raises(NcaError, match="m: a 'nca-model' file, not an nca state"):
        parse_state(model_bytes, "m")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "keep.bin"
    path.write_bytes(b"precious")

    with pytest.raises(TypeError):
        atomic_write_bytes(path, object())  # the write itself fails
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.bin"]  # no temp file left behind
