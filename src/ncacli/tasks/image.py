"""Growing a picture: the Distill experiments (growing / persistent / regenerating), conditional models
(the NCAtorch review), and the same rule grown towards a CLIP prompt (``text``) or a style (``texture``).

The state is RGBA (premultiplied) and hidden channels, grown from a seed; a conditional model reads a
one-hot class beside it. The objective is the config's ``loss`` (MSE to the target for ``image``); the
pool, damage and class mutation follow the Distill article and the NCAtorch review.
"""

from __future__ import annotations

from typing import Any

import torch

from ncacli.engine import (
    ALPHA,
    SamplePool,
    make_seed,
    one_hot,
    other_labels,
    ramp,
    random_circles,
    seed_position_for,
)
from ncacli.errors import UsageError
from ncacli.spec import ModelSpec, TaskSpec, image_channels
from ncacli.tasks.base import Asked, Batch, Schedule, Task

NOT_CONDITIONAL = "this model is not conditional (train one on several --emoji/--target)"


class ImageTask(Task):
    name = "image"
    summary = "grow a target image (or one of several: a conditional model) from a seed"
    perturbations = ("damage", "none", "mutation")
    capabilities = frozenset({"page", "zoom"})
    real_samples = True  # the target: a critic judges the growth against it

    def __init__(self, spec: ModelSpec, tensors: dict[str, torch.Tensor] | None = None, device: Any = "cpu") -> None:
        super().__init__(spec, tensors, device)
        self.target = self.tensors.get("target")
        if self.target is not None:
            self.target = self.target.to(self.device)
        self.classes = spec.model.condition_channels
        self.grid = tuple(spec.task.grid)
        self.seed_positions = [list(p) for p in spec.task.seed_positions]
        self.mode = spec.task.options.get("mode", "growing")
        self.config = None  # set by from_config: the training run's config
        self.objectives: list = []
        self.per_sample = False  # prepare: one objective judges the whole batch of a conditional model

    def moved(self) -> None:
        self.target = self.tensors.get("target")

    # -- training ------------------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: Any, device: Any) -> ImageTask:
        from ncacli.io.images import load_target, load_targets
        from ncacli.losses.objective import needs_target

        if config.classes():
            target, _ = load_targets(config.classes(), config.size, config.padding)
        elif needs_target(config):
            target, _ = load_target(config.target, config.emoji, config.size, config.padding)
        else:
            target = None
        return cls.for_target(config, target, device)

    @classmethod
    def check_tensors(cls, spec: ModelSpec, tensors: dict[str, torch.Tensor]) -> str | None:
        target, k = tensors.get("target"), spec.model.condition_channels
        shape = (k, 4) if k else (4,)
        if target is not None and (tuple(target.shape[:-2]) != shape or not torch.isfinite(target).all()):
            want = f"({k}, 4, H, W) targets" if k else "(4, H, W) RGBA image"
            return f"its target tensor is not a finite {want} ({list(target.shape)})"
        return None

    @classmethod
    def from_resume(cls, config: Any, tensors: dict[str, torch.Tensor], device: Any) -> ImageTask:
        """The target the run learned, from its resume file (the image on disk may have changed since)."""
        if "target" in tensors:
            return cls.for_target(config, tensors["target"], device)
        return cls.from_config(config, device)

    @classmethod
    def for_target(cls, config: Any, target: torch.Tensor | None, device: Any = "cpu") -> ImageTask:
        """The task for a target already in memory: ``(4, H, W)``, a conditional model's ``(K, 4, H, W)``, or
        None when the objective needs none (the grid is then ``size + 2·padding`` square)."""
        k = config.condition_channels
        if k and (target is None or target.ndim != 4 or target.shape[0] != k):
            got = None if target is None else list(target.shape)
            raise ValueError(f"a conditional model with {k} classes needs ({k}, 4, H, W) targets, not {got}")
        if target is not None:
            grid = [int(target.shape[-2]), int(target.shape[-1])]
            default = [list(seed_position_for(target.mean(0) if k else target))]
        else:
            side = config.size + 2 * config.padding
            grid, default = [side, side], [[0.5, 0.5]]
        spec = ModelSpec(
            config.model_config(),
            TaskSpec(
                name=cls.name,
                grid=grid,
                seed_kind=config.seed_kind,
                seed_positions=[list(p) for p in config.seed_positions] or default,
                background=config.background,
                classes=class_names(config),
                channels=image_channels(config.channels),
                options={"mode": config.mode},
            ),
        )
        task = cls(spec, {"target": target} if target is not None else {}, device)
        task.config = config
        return task.to(device)

    def prepare(self, config: Any, generator: torch.Generator) -> None:
        """The objective (one per class of a conditional model), drawing from the trainer's generator."""
        from ncacli.config import loss_names
        from ncacli.losses import takes_samples
        from ncacli.losses.objective import make_objective

        # a conditional model whose every term takes each sample's own target (mse, l1, a critic): one objective
        # for the batch, each sample judged against its class's target and its class beside it (the critic's
        # pairing); else one objective per class
        self.per_sample = bool(self.classes) and all(takes_samples(name) for name in loss_names(config.loss))
        targets = list(self.target) if self.classes and not self.per_sample else [self.target]
        self.objectives = [make_objective(config, t) for t in targets]
        for objective in self.objectives:
            objective.generator = generator

    def describe(self) -> str:
        return describe_target(self.config) if self.config is not None else ", ".join(self.spec.task.classes)

    def provenance(self) -> dict[str, Any]:
        config = self.config
        return {"target": self.describe(), "mode": config.mode, "loss": config.loss, **objective_provenance(config)}

    def seeds(self, n: int, generator: torch.Generator) -> torch.Tensor:
        cfg = self.spec
        x = make_seed(
            n, cfg.model.channels, *self.grid, self.seed_positions, self.device, cfg.task.seed_kind, generator
        )
        return x.contiguous(memory_format=torch.channels_last)

    def make_pool(self, trainer: Any) -> SamplePool | None:
        if self.mode == "growing":
            return None
        size, start = trainer.shard.pool_size, trainer.shard.pool_start
        labels = torch.arange(start, start + size, device=self.device) % self.classes if self.classes else None
        return SamplePool(trainer.seeds(size), size, labels)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample loss ``(B,)``; a conditional model's samples against their own class's target."""
        from ncacli.losses import Samples

        if labels is None:
            return self.objectives[0](x)
        if self.per_sample:
            return self.objectives[0](x, Samples(real=self.target[labels], condition=self.condition(labels)))
        total = x.new_zeros(x.shape[0])
        for k in labels.unique().tolist():
            total = torch.where(labels == k, self.objectives[k](x), total)
        return total

    def terms(self) -> dict[str, float]:
        return dict(self.objectives[0].last)

    def condition(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        return one_hot(labels, self.classes) if labels is not None else None

    def random_labels(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        if not self.classes:
            return None
        return torch.randint(self.classes, (n,), generator=generator, device=self.device)

    def batch(self, trainer: Any) -> Batch:
        """Sorted by loss, worst first: the worst is replaced by a seed; in ``regenerating`` mode the
        ``damage_count`` best get a hole, and in a conditional run the ``mutation_count`` next best
        are switched to another class (the NCAtorch review)."""
        g, batch, pool = trainer.generator, trainer.shard.batch, trainer.pool
        if pool is None:
            return Batch(None, trainer.seeds(batch), self.random_labels(batch, g))
        idx, x = pool.sample(batch, g)
        labels = pool.labels[idx] if pool.labels is not None else None
        with torch.no_grad():
            order = torch.argsort(self.loss(x, labels), descending=True)
        idx, x = idx[order], x[order]
        x[:1] = trainer.seeds(1)
        damaged = trainer.shard.damage_count if self.mode == "regenerating" else 0
        if damaged > 0:
            (h, w) = x.shape[2:]
            cfg = trainer.config
            alive = x[-damaged:, ALPHA] > cfg.alive_threshold if cfg.damage_center == "alive" else None
            mask = random_circles(damaged, h, w, g, self.device, tuple(cfg.damage_radius), alive)
            x[-damaged:] = self.erase(x[-damaged:], mask)
        if labels is not None:
            labels = labels[order]
            labels[:1] = self.random_labels(1, g)
            if trainer.shard.mutation_count:
                end = batch - damaged
                start = end - trainer.shard.mutation_count
                labels[start:end] = other_labels(labels[start:end], self.classes, g)
        return Batch(idx, x, labels)

    def grow(self, trainer: Any, steps: int, seed: int = 0) -> torch.Tensor:
        """One sample grown from the seed for ``steps`` steps (one per class) → ``(B, C, H, W)``."""
        g = torch.Generator(device=self.device)
        g.manual_seed(seed)
        labels = torch.arange(self.classes, device=self.device) if self.classes else None
        batch = self.classes or 1
        with torch.no_grad():
            return trainer.model.rollout(trainer.seeds(batch, g), steps, g, condition=self.condition(labels))

    def preview(self, trainer: Any) -> bytes:
        """The target (when there is one) beside the pattern grown for each of ``PREVIEW_STEPS``; a
        conditional model's classes one row each."""
        from ncacli.io.images import grid_png

        with torch.no_grad():  # (rows, steps, 4, H, W): the pictures grown
            grown = torch.stack([self.rgba(self.grow(trainer, steps)) for steps in PREVIEW_STEPS], dim=1)
        if self.target is not None:
            targets = torch.zeros_like(grown[:, :1])
            targets[:, 0, :4] = self.target if self.classes else self.target[None]
            grown = torch.cat([targets, grown], dim=1)
        columns = grown.shape[1]
        return grid_png(grown.flatten(0, 1), scale=max(1, 2 // self.scale), background=self.spec.task.background,
                        columns=columns)  # fmt: skip

    # -- showing -------------------------------------------------------------------------------------------

    def schedule(self, asked: Asked, grid: tuple[int, int], steps: int, every: int = 1) -> Schedule:
        """A conditional model grows the class ``--condition`` names (default the first), or each cell's class
        from the brightness of ``--condition-map`` (black the first, white the last, greys blend), switched to
        ``--condition-to`` after ``--switch-at``, or the frames of ``--condition-video`` one per shown frame."""
        from ncacli.choices import class_index

        names, k = self.spec.task.classes, self.classes
        conditions = ("condition", "condition_map", "switch_at", "condition_to", "condition_video")
        why = "a growing model reads no input; it grows from its seed (--condition: a class)"
        asked.only(conditions, why, self.name)
        if not k:
            asked.only((), NOT_CONDITIONAL, self.name)
            return Schedule()
        if (asked.switch_at is None) != (asked.condition_to is None):
            raise UsageError("--switch-at and --condition-to go together: switch after step N to class M")
        if asked.condition_video is not None:
            if asked.given("condition", "condition_map", "switch_at"):
                raise UsageError(
                    "--condition-video gives the condition of every step; drop --condition/--condition-map/--switch-at"
                )
            from ncacli.io.video import read_brightness_frames

            maps = ramp(read_brightness_frames(asked.condition_video, grid, -(-steps // every)), k).to(self.device)
            at = lambda step: maps[min((step - 1) // every, len(maps) - 1)][None]  # noqa: E731
            return Schedule(at, {"condition_video": asked.condition_video})
        if asked.condition is not None and asked.condition_map is not None:
            raise UsageError("--condition and --condition-map both name the condition; give one")
        if asked.condition_map is not None:
            from ncacli.io.images import brightness_map

            start = ramp(brightness_map(asked.condition_map, grid), k)[None].to(self.device)
        else:
            index = class_index(names, k, asked.condition) if asked.condition is not None else 0
            start = one_hot(torch.tensor([index]), k).to(self.device)
        about = {"condition": asked.condition, "switch_at": asked.switch_at, "condition_to": asked.condition_to}
        about.update(condition_map=asked.condition_map)
        about = {key: value for key, value in about.items() if value is not None} or {"condition": "0"}
        if asked.switch_at is None:
            return Schedule(start, about)
        after = one_hot(torch.tensor([class_index(names, k, asked.condition_to, "--condition-to")]), k).to(self.device)
        return Schedule(lambda step: start if step <= asked.switch_at else after, about)

    def page_start(self, grid: tuple[int, int], asked: Asked) -> tuple[dict[str, Any], dict[str, Any]]:
        """The class the page starts with (``--condition``; default the first)."""
        from ncacli.choices import class_index

        why = "a growing model's page takes --condition" if self.classes else NOT_CONDITIONAL
        asked.only(("condition",) if self.classes else (), why, self.name)
        if asked.condition is None:
            return {"condition": 0}, {}
        return {"condition": class_index(self.spec.task.classes, self.classes, asked.condition)}, {}

    def page_name(self) -> str:
        return ", ".join(self.spec.task.classes)


PREVIEW_STEPS = (96, 200)


class TextTask(ImageTask):
    name = "text"
    summary = "grow towards a text prompt through CLIP (nca-clip)"
    implied_by = ("clip",)

    @classmethod
    def preset_for(cls, data: str | None = None) -> str | None:
        return "clip"  # nca-clip's recipe

    perturbations = ("damage", "none")


class TextureTask(ImageTask):
    """A texture under the VGG style loss. The model file keeps the style image (``task.style``, fitted into
    ``objectives.style.size`` and composited over white, as the loss compares with it), so ``nca evaluate`` can measure
    the texture with the style metric; files saved before it did still load (``--style FILE`` then)."""

    name = "texture"
    summary = "grow a texture under a VGG style loss"
    implied_by = ("style",)
    perturbations = ("damage", "none")
    evaluation_metrics = ("style",)  # nca evaluate's default: there is no target picture
    damage_shape = "top"  # the NCAtorch review's 50% horizontal removal (Figure 11): the upper half

    @classmethod
    def for_target(cls, config: Any, target: torch.Tensor | None, device: Any = "cpu") -> TextureTask:
        from ncacli.config import loss_names
        from ncacli.registry import OBJECTIVES

        task = super().for_target(config, target, device)
        for name in loss_names(config.loss):  # what each objective keeps (style: its image; CLIP alone: nothing)
            keeps = getattr(OBJECTIVES.get(name, "loss"), "keeps", None)
            if keeps is not None:
                task.tensors.update({k: v.to(task.device) for k, v in keeps(config.objective(name)).items()})
        return task

    @classmethod
    def check_tensors(cls, spec: ModelSpec, tensors: dict[str, torch.Tensor]) -> str | None:
        from ncacli.losses.style import STYLE_IMAGE

        style = tensors.get(STYLE_IMAGE)
        shaped = style is not None and style.ndim == 3 and style.shape[0] in (3, 4) and min(style.shape[1:]) > 0
        if style is not None and (not shaped or not torch.isfinite(style).all()):
            return f"its style tensor is not a finite (3 or 4, H, W) image ({list(style.shape)})"
        return super().check_tensors(spec, tensors)

    @property
    def style(self) -> torch.Tensor | None:
        """The style image the model learned ``(3 or 4, h, w)``, or None (a file from before models kept it)."""
        from ncacli.losses.style import STYLE_IMAGE

        return self.tensors.get(STYLE_IMAGE)


def class_names(config: Any) -> list[str]:
    return [value if kind == "target" else f"emoji {value}" for kind, value in config.classes()]


def describe_target(config: Any) -> str:
    from ncacli.losses.objective import describe_objectives

    described = describe_objectives(config)
    if described:
        return described
    if config.classes():
        return ", ".join(class_names(config))
    return config.target or f"emoji {config.emoji}"


def objective_provenance(config: Any) -> dict:
    """What the objective was made of, for the model file's history: each term's weight, and what each
    objective says of its options (its ``provenance``), else the options as given."""
    from ncacli.config import loss_names
    from ncacli.registry import OBJECTIVES

    names = loss_names(config.loss)
    out: dict = {"loss_weights": {n: float(config.loss_weights.get(n, 1.0)) for n in names}}
    for name in names:
        provenance = getattr(OBJECTIVES.get(name, "loss"), "provenance", None)
        if provenance is not None:
            out.update(provenance(config.objective(name)))
        elif config.objectives.get(name):
            out.setdefault("objectives", {})[name] = config.objectives[name]
    return out
