"""Model files: one self-describing safetensors file.

Tensors are the module's ``state_dict`` plus what the model's task keeps beside it (``task.<name>``; the
growing task's ``target``: the ``(4, H, W)`` premultiplied RGBA target it learned, or a conditional model's
``(K, 4, H, W)`` targets, so ``nca evaluate`` needs nothing but the file). ``__metadata__`` holds ``format``
(``nca-model``), ``format_version`` (``2``), ``spec`` (the :class:`~ncacli.spec.ModelSpec` as JSON: architecture
and task, everything needed to rebuild and run the model) and ``provenance`` (JSON, history only: preset,
iterations, seed, device, toolkit version, data). Version 1 files (toolkit 0.1.0: ``config`` and a provenance
holding the grid and seed) are read too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch

from ncacli import __version__
from ncacli.engine import build_model
from ncacli.engine.nca import NCA
from ncacli.errors import NcaError
from ncacli.io.files import atomic_write_bytes, pack, read_input, unpack
from ncacli.spec import FORMAT_VERSION, ModelSpec

FORMAT = "nca-model"
READS = ("1", str(FORMAT_VERSION))
TARGET = "target"  # the growing task's tensor, under its 0.1.0 name


@dataclass
class LoadedModel:
    """A model file, read: the module, its spec, its history, and the task's tensors."""

    model: NCA
    spec: ModelSpec
    provenance: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # the task's (the target), on the CPU
    path: str = ""

    @property
    def target(self) -> torch.Tensor | None:
        return self.tensors.get(TARGET)


def model_bytes(model: NCA, spec: ModelSpec, provenance: dict[str, Any], tensors: dict | None = None) -> bytes:
    saved = dict(model.state_dict())
    for name, t in (tensors or {}).items():
        saved[name] = t.float() if t.is_floating_point() else t
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "spec": json.dumps(spec.to_dict(), ensure_ascii=False),
        "provenance": json.dumps({"toolkit_version": __version__, **provenance}, ensure_ascii=False),
    }
    return pack(saved, metadata)


def save_model(model: NCA, spec: Any, path: Any, provenance: Any = None, tensors: Any = None) -> None:
    """Write ``model`` with its ``spec``, history and task tensors: ``save_model(model, spec, path, provenance,
    tensors)``. The 0.1.0 call ``save_model(model, path, provenance, target)`` still works (a growing model whose
    grid and seed are in ``provenance``)."""
    if not isinstance(spec, ModelSpec):
        path, provenance, target = spec, path, provenance
        spec = ModelSpec.from_v1(model.config.to_dict(), provenance or {})
        spec = ModelSpec(spec.model, spec.task)  # written as version 2
        tensors = {TARGET: target} if target is not None else {}
    atomic_write_bytes(path, model_bytes(model, spec, provenance or {}, tensors))


def model_path(name: str) -> str:
    """What a ``MODEL`` argument names: a model file (or ``-``, stdin) as given, else the zoo model of that
    name (``nca zoo``). The one resolution of every verb and of :func:`ncacli.api.load`."""
    from ncacli.zoo import resolve

    return resolve(str(name))


def read_model_file(name: str) -> tuple[dict, dict[str, str]]:
    """The tensors and metadata of a model file (or zoo model), checked to be an nca model."""
    name = model_path(name)
    tensors, meta = unpack(read_input(name), name)
    if meta.get("format") != FORMAT:
        found = meta.get("format")
        what = f"a {found!r} file" if found else "a safetensors file without nca metadata"
        raise NcaError(f"{name}: {what}, not an nca model")
    if meta.get("format_version") not in READS:
        raise NcaError(
            f"{name}: model format version {meta.get('format_version')!r}; this nca reads versions {', '.join(READS)}"
        )
    return tensors, meta


def read_spec(name: str, meta: dict[str, str]) -> tuple[ModelSpec, dict[str, Any]]:
    """``(spec, provenance)`` from a model file's metadata, version 1 or 2."""
    try:
        provenance = json.loads(meta.get("provenance", "{}"))
        if meta["format_version"] == "1":
            return ModelSpec.from_v1(json.loads(meta["config"]), provenance), provenance
        return ModelSpec.from_dict(json.loads(meta["spec"])), provenance
    except (KeyError, ValueError, TypeError) as exc:
        raise NcaError(f"{name}: model metadata is damaged ({exc})") from None


def task_tensor_names(tensors: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in tensors if k == TARGET or k.startswith("task.")]


def load(name: str, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model from the file alone."""
    name = model_path(name)
    tensors, meta = read_model_file(name)
    spec, provenance = read_spec(name, meta)
    extra = {k: tensors.pop(k) for k in task_tensor_names(tensors)}
    config = spec.model
    from ncacli.registry import ARCHITECTURES, PERCEPTIONS, TASKS, UPDATES

    if spec.task.name in TASKS:
        problem = TASKS[spec.task.name].check_tensors(spec, extra)
        if problem is not None:
            raise NcaError(f"{name}: {problem}")

    entries = [(ARCHITECTURES, "architecture", config.architecture)]
    if config.architecture == "nca":
        entries += [(PERCEPTIONS, "perception", config.perception), (UPDATES, "update", config.update)]
    for registry, what, value in entries:
        if value not in registry:
            raise NcaError(f"{name}: needs {what} {value!r}, which is not installed (see `nca plugins`)")
    try:
        model = build_model(config)
    except (TypeError, ValueError) as exc:
        raise NcaError(f"{name}: its architecture cannot be built ({exc})") from None
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise NcaError(f"{name}: weights do not match the architecture (missing {missing}, unexpected {unexpected})")
    return LoadedModel(model.to(device).eval(), spec, provenance, extra, name)


def _perception(config: dict[str, Any]) -> dict[str, Any] | None:
    """The perception's name, receptive field, parameters and features (None if not installed)."""
    from ncacli.engine.learned_perception import describe as describe_perception
    from ncacli.engine.perception import make_perception

    if config.get("architecture", "nca") != "nca":
        return None
    try:
        seen = config["channels"] + config.get("condition_channels", 0)
        module = make_perception(
            config["perception"], seen, config.get("padding_mode", "zeros"), config.get("perception_options")
        )
    except (KeyError, TypeError, ValueError, NcaError):
        return None
    return {"name": config["perception"], **describe_perception(module, seen)}


def describe(name: str) -> dict[str, Any]:
    """What a model file holds, for ``nca info``."""
    name = model_path(name)
    tensors, meta = read_model_file(name)
    spec, provenance = read_spec(name, meta)
    config = spec.model.to_dict()
    if spec.model.architecture != "nca":  # what the model does not read, not shown
        from ncacli.engine.nca import NCA_ONLY

        config = {k: v for k, v in config.items() if k not in NCA_ONLY}
    extra = task_tensor_names(tensors)
    return {
        "file": name,
        "format": meta["format"],
        "format_version": meta["format_version"],
        "spec": spec.to_dict(),
        "config": config,
        "perception": _perception(config),
        "provenance": provenance,
        "random_weights": ["VGG16"] if provenance.get("vgg_weights") == "random" else [],
        "parameters": sum(t.numel() for k, t in tensors.items() if k not in extra),
        "tensors": {k: list(t.shape) for k, t in sorted(tensors.items()) if k not in extra},
        "target": list(tensors[TARGET].shape) if TARGET in tensors else None,
        "task_tensors": {k: list(tensors[k].shape) for k in extra},
    }


def load_model(name: str, device: str = "cpu") -> tuple[NCA, dict[str, Any]]:
    """``(model, provenance)`` (the 0.1.0 call; :func:`load` gives the spec and the task's tensors too)."""
    loaded = load(name, device)
    return loaded.model, loaded.provenance


def load_model_and_target(name: str, device: str = "cpu") -> tuple[NCA, dict[str, Any], torch.Tensor | None]:
    loaded = load(name, device)
    return loaded.model, loaded.provenance, loaded.target
