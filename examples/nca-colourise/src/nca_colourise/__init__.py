"""`colourise`: an NCA that paints a grey picture in its colours (an nca task from outside the toolkit).

The grey picture is the condition, one channel the update reads and never writes; the colours grow in the
state's first three channels from zeros, every cell alive. Trained on one picture, a rule paints other grey
pictures too (``nca grow MODEL --input grey.png``), as far as their grey resembles what it learned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ncacli.errors import UsageError
from ncacli.io.images import grid_png, load_target, to_pixels
from ncacli.spec import ModelSpec, TaskSpec
from ncacli.tasks import Asked, Batch, Schedule, Task

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601: the grey a picture shows


def grey_of(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` → its grey ``(B, 1, H, W)``."""
    weights = torch.tensor(LUMA, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * weights).sum(1, keepdim=True)


@dataclass
class Options:
    image: str = "skimage:coffee"  # the picture whose colours the rule learns (a file, or skimage:NAME)
    size: int = 32  # its longer side, in cells


class ColouriseTask(Task):
    name = "colourise"
    summary = "paint a grey picture in its colours (the grey in a channel the update only reads)"
    perturbations = ("none",)
    Options = Options

    def __init__(self, spec: ModelSpec, tensors: dict[str, torch.Tensor] | None = None, device: Any = "cpu") -> None:
        super().__init__(spec, tensors, device)
        self.moved()

    def moved(self) -> None:
        self.target = self.tensors.get("target")  # (4, H, W): the picture, alpha 1
        self.grey = None if self.target is None else grey_of(self.target[None, :3])

    @staticmethod
    def check_config(config: Any) -> None:
        o = Options(**config.task_options)
        if o.size < 4:
            raise UsageError(f"task.size must be at least 4 cells, not {o.size}")
        if config.channels < 4:
            raise UsageError(f"channels ({config.channels}) must be at least 4: the colours, then hidden")

    @classmethod
    def from_config(cls, config: Any, device: Any) -> ColouriseTask:
        o = Options(**config.task_options)
        rgba, _ = load_target(o.image, "", o.size, 0)
        target = torch.cat([rgba[:3] / rgba[3:].clamp_min(1e-6) * (rgba[3:] > 0), torch.ones_like(rgba[:1])])
        model = replace(config.model_config(), condition_channels=1, alive_masking=False)
        channels = {"rgb": [0, 1, 2], "hidden": list(range(3, config.channels)), "input": [0]}
        task = TaskSpec(cls.name, list(target.shape[1:]), "zeros", [], "none", [], channels, asdict(o))
        return cls(ModelSpec(model, task), {"target": target.clamp(0, 1)}, device)

    def describe(self) -> str:
        return f"colourise {self.spec.task.options['image']}"

    def provenance(self) -> dict[str, Any]:
        return {"target": self.spec.task.options["image"]}

    # -- training ------------------------------------------------------------------------------------------

    def seeds(self, n: int, generator: torch.Generator) -> torch.Tensor:
        h, w = self.spec.task.grid
        return torch.zeros(n, self.spec.model.channels, h, w, device=self.device)

    def batch(self, trainer: Any) -> Batch:
        return Batch(None, trainer.seeds(trainer.shard.batch), None)

    def condition(self, labels: torch.Tensor | None) -> torch.Tensor:
        return self.grey

    def loss(self, states: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return ((states[:, :3] - self.target[None, :3]) ** 2).mean((1, 2, 3))

    def preview(self, trainer: Any) -> bytes:
        g = torch.Generator(device=self.device).manual_seed(0)
        with torch.no_grad():
            grown = trainer.model.rollout(self.seeds(1, g), 64, g, condition=self.grey)
        return grid_png(torch.stack([self.shown(self.grey), self.rgba(grown)[0], self.target]), scale=4)

    # -- showing -------------------------------------------------------------------------------------------

    def rgba(self, states: torch.Tensor) -> torch.Tensor:
        return torch.cat([states[:, :3].clamp(0, 1), torch.ones_like(states[:, :1])], dim=1)

    @staticmethod
    def shown(grey: torch.Tensor) -> torch.Tensor:
        """A grey input ``(1, 1, H, W)`` as RGBA ``(4, H, W)``."""
        return torch.cat([grey[0].expand(3, -1, -1), torch.ones_like(grey[0])])

    def schedule(self, asked: Asked, grid: tuple[int, int], steps: int, every: int = 1) -> Schedule:
        """``--input``: another picture to colour, made grey and fitted to the grid; else the training one."""
        asked.only(("input",), "a colouring model takes --input (a grey or colour picture to colour)", self.name)
        if asked.input is None:
            if tuple(grid) != tuple(self.spec.task.grid):
                grey = F.interpolate(self.grey, size=tuple(grid), mode="bilinear", align_corners=False)
                return Schedule(grey, {"input": self.spec.task.options["image"]})
            return Schedule(self.grey, {"input": self.spec.task.options["image"]})
        rgba, _ = load_target(asked.input, "", max(grid), 0)
        picture = F.interpolate(rgba[None, :3], size=tuple(grid), mode="bilinear", align_corners=False)
        return Schedule(grey_of(picture).clamp(0, 1).to(self.device), {"input": asked.input})

    def frame(self, states: torch.Tensor, condition: torch.Tensor | None, scale: int) -> Any:
        """The grey input beside the colours painted so far."""
        grey = self.grey if condition is None else condition[:1]
        left = to_pixels(self.shown(grey), scale=scale, background="none")
        right = to_pixels(self.rgba(states[:1])[0], scale=scale, background="none")
        return np.concatenate([left, np.full((left.shape[0], 2, 3), 128, np.uint8), right], axis=1)

    # -- evaluating ----------------------------------------------------------------------------------------

    def evaluate(self, model: Any, trials: int | None = None, seed: int = 0, final: int = 96, **_: Any) -> dict:
        """The colour error after ``final`` steps (mean absolute, RGB in [0, 1]) beside that of the grey
        picture itself, and the share of it the rule recovers: 100% paints the picture, 0% leaves it grey."""
        n = trials or 4
        g = torch.Generator(device=self.device).manual_seed(seed)
        with torch.no_grad():
            grown = model.nca.rollout(self.seeds(n, g), final, g, condition=self.grey)
        truth = self.target[None, :3]
        painted = (grown[:, :3].clamp(0, 1) - truth).abs().mean((1, 2, 3))
        grey = (self.grey.expand(-1, 3, -1, -1) - truth).abs().mean().item()
        mean = painted.mean().item()
        return {
            "model": model.path,
            "task": self.name,
            "target": self.spec.task.options["image"],
            "steps": final,
            "trials": n,
            "colour_error": mean,
            "colour_error_std": painted.std(unbiased=False).item(),
            "grey_error": grey,
            "colour_recovered": 100.0 * (1.0 - mean / grey) if grey > 0 else None,
        }
