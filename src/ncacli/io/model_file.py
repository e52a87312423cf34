"""Model files: one self-describing safetensors file.

Tensors are the module's ``state_dict`` plus, when the model was trained on one, ``target``: the
``(4, H, W)`` premultiplied RGBA target it learned (so ``nca evaluate`` needs nothing but the file),
or a conditional model's ``(K, 4, H, W)`` targets, one per class (``provenance["classes"]`` names them).
``__metadata__`` holds ``format`` (``nca-model``),
``format_version``, ``config`` (the architecture as JSON) and ``provenance`` (JSON: preset,
target, iterations, seed, toolkit version, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ncacli import __version__
from ncacli.engine.nca import NCA, ModelConfig
from ncacli.errors import NcaError
from ncacli.io.files import atomic_write_bytes, pack, read_input, unpack

FORMAT = "nca-model"
FORMAT_VERSION = "1"
TARGET = "target"


def model_bytes(model: NCA, provenance: dict[str, Any], target: torch.Tensor | None = None) -> bytes:
    tensors = dict(model.state_dict())
    if target is not None:
        tensors[TARGET] = target.float()
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(model.config.to_dict()),
        "provenance": json.dumps({"toolkit_version": __version__, **provenance}, ensure_ascii=False),
    }
    return pack(tensors, metadata)


def save_model(model: NCA, path: Path, provenance: dict[str, Any], target: torch.Tensor | None = None) -> None:
    atomic_write_bytes(path, model_bytes(model, provenance, target))


def read_model_file(name: str) -> tuple[dict, dict[str, str]]:
    """The tensors and metadata of a model file, checked to be an nca model."""
    tensors, meta = unpack(read_input(name), name)
    if meta.get("format") != FORMAT:
        found = meta.get("format")
        what = f"a {found!r} file" if found else "a safetensors file without nca metadata"
        raise NcaError(f"{name}: {what}, not an nca model")
    if meta.get("format_version") != FORMAT_VERSION:
        raise NcaError(
            f"{name}: model format version {meta.get('format_version')!r}; this nca reads version {FORMAT_VERSION}"
        )
    return tensors, meta


def load_model(name: str, device: str = "cpu") -> tuple[NCA, dict[str, Any]]:
    """Rebuild the model from the file alone → ``(model, provenance)``."""
    model, provenance, _ = load_model_and_target(name, device)
    return model, provenance


def load_model_and_target(name: str, device: str = "cpu") -> tuple[NCA, dict[str, Any], torch.Tensor | None]:
    """``(model, provenance, target (4, H, W), a conditional model's (K, 4, H, W), or None)`` from a model file."""
    tensors, meta = read_model_file(name)
    target = tensors.pop(TARGET, None)
    try:
        config = ModelConfig.from_dict(json.loads(meta["config"]))
        provenance = json.loads(meta.get("provenance", "{}"))
    except (KeyError, ValueError, TypeError) as exc:
        raise NcaError(f"{name}: model metadata is damaged ({exc})") from None
    k = config.condition_channels
    shape = (k, 4) if k else (4,)
    if target is not None and (tuple(target.shape[:-2]) != shape or not torch.isfinite(target).all()):
        want = f"({k}, 4, H, W) targets" if k else "(4, H, W) RGBA image"
        raise NcaError(f"{name}: its target tensor is not a finite {want} ({list(target.shape)})")
    try:
        model = NCA(config)
    except KeyError as exc:
        raise NcaError(f"{name}: needs perception {exc} which is not installed (see `nca plugins`)") from None
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise NcaError(f"{name}: weights do not match the architecture (missing {missing}, unexpected {unexpected})")
    return model.to(device).eval(), provenance, target


def _perception(config: dict[str, Any]) -> dict[str, Any] | None:
    """The perception's name, receptive field, parameters and features per channel (None if not installed)."""
    from ncacli.engine.learned_perception import describe as describe_perception
    from ncacli.engine.perception import make_perception

    try:
        seen = config["channels"] + config.get("condition_channels", 0)
        module = make_perception(config["perception"], seen, config.get("padding_mode", "zeros"))
    except (KeyError, TypeError, ValueError):
        return None
    return {"name": config["perception"], **describe_perception(module)}


def describe(name: str) -> dict[str, Any]:
    """What a model file holds, for ``nca info``."""
    tensors, meta = read_model_file(name)
    config = json.loads(meta.get("config", "{}"))
    provenance = json.loads(meta.get("provenance", "{}"))
    return {
        "file": name,
        "format": meta["format"],
        "format_version": meta["format_version"],
        "config": config,
        "perception": _perception(config),
        "provenance": provenance,
        "random_weights": ["VGG16"] if provenance.get("vgg_weights") == "random" else [],
        "parameters": sum(t.numel() for k, t in tensors.items() if k != TARGET),
        "tensors": {k: list(t.shape) for k, t in sorted(tensors.items()) if k != TARGET},
        "target": list(tensors[TARGET].shape) if TARGET in tensors else None,
    }
