"""The public Python API: what the verbs do, for a notebook or a script. The verbs are thin layers over it.

>>> import ncacli.api as nca
>>> model = nca.load("docs/lizard.safetensors")            # any model file, any task
>>> state = model.grow(200)                                  # (1, C, H, W), from the model's own seed
>>> hole = nca.damage(state, "circle", (0.5, 0.5), 0.2)
>>> healed = model.grow(200, state=hole)
>>> picture = model.picture(healed)                          # (1, 3, H, W) RGB in [0, 1]
>>> result = nca.evaluate(model, trials=4)                   # the NCAtorch review's protocol
>>> run = nca.train(nca.config("growing", iters=50, size=16, padding=4), out="runs/mine")

See ``docs/api.md``; ``examples/api_tour.py`` runs every function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ncacli.engine.nca import NCA
from ncacli.io.model_file import LoadedModel
from ncacli.spec import ModelSpec
from ncacli.tasks.base import Task, task_for


@dataclass
class Model:
    """A loaded model: the NCA module, its spec, its task (bound to it), its history."""

    nca: NCA
    spec: ModelSpec
    task: Task
    provenance: dict[str, Any]
    path: str = ""
    engine: str = "auto"

    @property
    def device(self) -> torch.device:
        return next(self.nca.parameters()).device

    @property
    def target(self) -> torch.Tensor | None:
        return getattr(self.task, "target", None)

    def seed(self, batch: int = 1, grid: tuple[int, int] | None = None, seed: int = 0) -> torch.Tensor:
        """The state the model starts from ``(B, C, H, W)`` (a random-colour seed takes its colours from ``seed``)."""
        h, w = grid if grid is not None else tuple(self.spec.task.grid)
        return self.task.start(batch, (h, w), torch.Generator().manual_seed(seed)).to(self.device)

    def grow(
        self,
        steps: int,
        state: torch.Tensor | None = None,
        seed: int = 0,
        condition: torch.Tensor | Callable[[int], torch.Tensor] | None = None,
        observe: Callable[[int, torch.Tensor], torch.Tensor | None] | None = None,
        zoom: Any = None,
        runner: Any = None,
    ) -> torch.Tensor:
        """Run ``steps`` steps from ``state`` (default: the seed); fire masks from ``seed``. ``zoom``, a
        :class:`ncacli.engine.zoom.Zoom`: fractal growth, the grid scaled up as it grows (the result at the
        last grid; tasks whose ``capabilities`` say ``zoom``). ``runner``: given the NCA, what runs the steps in
        its place (a task's :attr:`ncacli.tasks.Schedule.runner`: classifier-free guidance)."""
        x = (self.seed(seed=seed) if state is None else state).to(self.device)
        g = torch.Generator(device=self.device).manual_seed(seed)
        with torch.no_grad():
            if zoom is not None:
                from ncacli.engine.zoom import zoom_rollout

                if runner is not None:
                    raise ValueError("fractal growth runs the NCA alone, not a guided pair of rollouts")
                if "zoom" not in self.task.capabilities:
                    raise ValueError(f"a {self.spec.task.name!r} model's state is not a picture to zoom")
                return zoom_rollout(self.nca, x, steps, zoom, g, observe, condition)
            stepper = self.nca if runner is None else runner(self.nca)
            return stepper.rollout(x, steps, g, observe, condition=condition)

    def picture(self, state: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """How ``state`` looks, as the task shows it: RGB ``(B, 3, H, W)`` in [0, 1]."""
        return self.task.picture(state, condition)

    def rgba(self, state: torch.Tensor) -> torch.Tensor:
        """The picture ``state`` stands for, premultiplied RGBA ``(B, 4, H·scale, W·scale)`` on the CPU (a latent
        model's decoded)."""
        with torch.no_grad():
            return self.task.rgba(state.to(self.device)).cpu()


def load(path: str | Path, device: str = "cpu", engine: str = "auto") -> Model:
    """A model file (any version this toolkit reads), or the name of a zoo model, → :class:`Model` on ``device``,
    steps on ``engine``."""
    from ncacli.choices import use_engine
    from ncacli.io.model_file import load as load_file

    loaded: LoadedModel = load_file(str(path), device)  # a zoo name (`nca zoo`) when no such file exists
    task = task_for(loaded.spec, loaded.tensors, device).to(device)
    model = Model(loaded.model, loaded.spec, task, loaded.provenance, loaded.path)
    model.engine = use_engine(loaded.model, engine)
    return model


def frames(
    model: Model,
    steps: int,
    every: int = 1,
    scale: int = 4,
    seed: int = 0,
    state: torch.Tensor | None = None,
    condition: torch.Tensor | Callable[[int], torch.Tensor] | None = None,
    damage_at: int | None = None,
    damage_mask: torch.Tensor | None = None,
    zoom: Any = None,
    runner: Any = None,
) -> list:
    """The frames of a video (``nca render``): the start, then every ``every`` steps and the last, each as the
    task shows it (``(H·scale, W·scale, 3)`` uint8, a classifier's with its legend); ``damage_mask`` erased
    after the update of step ``damage_at``. With ``zoom`` (fractal growth) every frame keeps the first grid's
    display size, the cells drawn smaller as the grid grows."""
    from ncacli.engine.zoom import fixed_display, resize_nearest

    x = model.seed(seed=seed) if state is None else state.to(model.device)
    at = condition if callable(condition) else (lambda step: condition)
    show = model.task.frame if zoom is None else fixed_display(model.task.frame, scale, tuple(x.shape[-2:]))
    out = [show(x, at(1), scale)]

    def observe(step: int, x: torch.Tensor):
        replaced = None
        if damage_at is not None and step == damage_at:
            size = (x.shape[-2] * model.task.scale, x.shape[-1] * model.task.scale)  # the picture's pixels
            replaced = x = model.task.erase(x, resize_nearest(damage_mask.to(x.device), size))
        if step % every == 0 or step == steps:
            out.append(show(x, at(step), scale))
        return replaced

    model.grow(steps, x, seed, condition, observe, zoom, runner)
    return out


def damage(
    state: torch.Tensor, shape: str = "circle", center: tuple[float, float] = (0.5, 0.5), radius: float = 0.2
) -> torch.Tensor:
    """Erase cells of every sample: a circle, a square, or a half cut (``left``, ``right``, ``top``, ``bottom``)."""
    from ncacli.engine import apply_damage, damage_mask

    mask = damage_mask(state.shape[2], state.shape[3], shape, center, radius, device=state.device)
    return apply_damage(state, mask)


def evaluate(model: Model, **options: Any) -> dict[str, Any]:
    """The task's evaluation (``nca evaluate``): the NCAtorch review's three stages and recovery % for a
    growing model, accuracy for a classifier. ``options`` are ``nca evaluate``'s, in Python spelling."""
    from ncacli.evaluation.run import evaluate_model

    return evaluate_model(model, **options).document


def config(preset: str | None = None, sets: list[str] | None = None, **keys: Any):
    """A training config: defaults < ``preset`` < ``sets`` (``"key=value"``) < ``keys``."""
    from ncacli.config import resolve

    return resolve(preset, None, sets, keys)


def train(cfg: Any, out: str | Path, quiet: bool = True, engine: str = "auto", log: tuple = ()) -> dict[str, Any]:
    """Train ``cfg`` (from :func:`config`) into the run directory ``out`` → the summary ``nca train`` prints;
    ``log``: ``("tensorboard", "wandb")`` or either, as ``nca train --log``."""
    from ncacli.train.session import train_run

    return train_run(cfg, Path(out), quiet=quiet, engine=engine, log=log)
