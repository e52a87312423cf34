"""The model spec: everything needed to rebuild and run a model, typed, saved whole in the model file.

A :class:`ModelSpec` is the architecture (:class:`~ncacli.engine.nca.ModelConfig`, every perception and update
option included), the task with its settings (:class:`TaskSpec`: what a state starts as, on which grid,
how it is shown, the classes and what each channel means) and the format version. History (preset,
iterations, device, toolkit version, data) is the file's provenance, not part of the spec.

Version 1 files (toolkit 0.1.0) kept the architecture as ``config`` and the rest in ``provenance``;
:meth:`ModelSpec.from_v1` reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ncacli.engine.nca import ModelConfig

FORMAT_VERSION = 2


def _strict(cls: type, data: dict[str, Any], what: str) -> dict[str, Any]:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}")
    return data


@dataclass(frozen=True)
class TaskSpec:
    """What a model's task says about its states: the task's name, the grid, the seed, how it is shown."""

    name: str = "image"
    grid: list = field(default_factory=lambda: [72, 72])  # [H, W] the model was trained on
    seed_kind: str = "distill"
    seed_positions: list = field(default_factory=lambda: [[0.5, 0.5]])  # (x, y) fractions
    background: str = "white"  # what dead cells look like in pictures
    classes: list = field(default_factory=list)  # names of the classes (conditional targets, digits)
    # what each channel means: {"rgb": [0, 1, 2], "alpha": [3], "hidden": [4, …]}; "input" names condition
    # channels the update never writes
    channels: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # the task's own settings (its Options)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        return cls(**_strict(cls, data, "task"))


def image_channels(channels: int) -> dict[str, list[int]]:
    """The channel meanings of a growing model: RGB (premultiplied), alpha, hidden."""
    return {"rgb": [0, 1, 2], "alpha": [3], "hidden": list(range(4, channels))}


@dataclass(frozen=True)
class ModelSpec:
    model: ModelConfig
    task: TaskSpec
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": self.format_version, "model": self.model.to_dict(), "task": self.task.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        _strict(cls, data, "spec")
        return cls(
            ModelConfig.from_dict(data["model"]),
            TaskSpec.from_dict(data["task"]),
            int(data.get("format_version", FORMAT_VERSION)),
        )

    @classmethod
    def from_v1(cls, config: dict[str, Any], provenance: dict[str, Any]) -> ModelSpec:
        """A 0.1.0 file: the architecture in ``config``; grid, seed, background, classes in ``provenance``."""
        model = ModelConfig.from_dict(config)
        loss = str(provenance.get("loss", "mse"))
        from ncacli.config import implied_task

        task = TaskSpec(
            name=implied_task(loss),
            grid=list(provenance.get("grid", [72, 72])),
            seed_kind=provenance.get("seed_kind", "distill"),
            seed_positions=[list(p) for p in provenance.get("seed_positions") or [[0.5, 0.5]]],
            background=provenance.get("background", "white"),
            classes=list(provenance.get("classes") or []),
            channels=image_channels(model.channels),
            options={"mode": provenance["mode"]} if "mode" in provenance else {},
        )
        return cls(model, task, 1)

    def with_task(self, **changes: Any) -> ModelSpec:
        return replace(self, task=replace(self.task, **changes))
