"""Growing digits from a seed whose colour names the class (the NCAtorch review, Appendix A.5, Figure 18).

One cell in the middle of an empty grid starts with its RGB the class's colour (ten hues), alpha and the hidden
channels 1; the model has no condition channels, so all it knows of the class is what that colour tells it as
the pattern grows. Each pool sample is labelled with one training image of its class and judged against it:
with ``mse`` or ``l1`` the best a model can do is the class's mean (or median) digit, the same every time; a
critic (``l1+wgan-gp``, which sees the class beside the picture) rewards any digit that looks real, so the samples
may differ. Where they differ comes from the fire masks alone: each sample's cells update at random (half of them
a step), and nothing else in a growth is random.

Classifier-free guidance: with ``class_drop`` = p, each fresh sample loses its class with probability p, its seed
the grey *null* colour and its picture a training image of any class, so the same model also learns to grow a
digit of no class in particular. A growth is then guided (:mod:`ncacli.engine.guidance`) by growing the null seed
beside the class seed with the same fire masks and giving the class's cells ``u + w·(c − u)`` each step.

The digits are pictures on black: the target's RGB is the image and its alpha the image's brightest channel
(ink is opaque, black is empty). Data: scikit-learn's 1,797 bundled 8×8 digits (``digits``), MNIST through
torchvision on a user's machine (``mnist``), or a folder with one sub-folder of images per class.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from ncacli.engine import random_circles
from ncacli.errors import UsageError
from ncacli.spec import ModelSpec, TaskSpec, image_channels
from ncacli.tasks.base import Asked, Batch, DatasetTask, Schedule
from ncacli.tasks.classify import PALETTE
from ncacli.tasks.image import objective_provenance

NULL_COLOUR = (0.5, 0.5, 0.5)  # the seed of a sample whose class was dropped


@dataclass(frozen=True)
class Options:
    data: str = "digits"  # digits (scikit-learn's, bundled), mnist (torchvision), or a folder of class sub-folders
    data_root: str = ""  # where torchvision keeps MNIST ("" = $NCA_DATA or ~/.cache/torch/datasets)
    test_fraction: float = 0.2  # digits and folders: the share held out (the evaluation's classifier's test split)
    split_seed: int = 0  # digits and folders: the seed of the held-out split
    class_drop: float = 0.0  # classifier-free guidance: the probability a fresh sample's class is dropped
    fresh: int = 0  # pool samples started again from a new seed each batch, the worst (0: half the batch)

    def __post_init__(self) -> None:
        if not 0.0 <= self.class_drop < 1.0:
            raise UsageError(f"task.class_drop must be in [0, 1), not {self.class_drop}")
        if self.fresh < 0:
            raise UsageError(f"task.fresh must be 0 (half the batch) or more, not {self.fresh}")


@dataclass
class Digits:
    """The data: ``images`` ``(N, 1|3, H, W)`` in [0, 1], their targets ``(N, 4, H, W)`` (see the module), labels."""

    images: torch.Tensor
    targets: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    train: torch.Tensor
    test: torch.Tensor
    source: str


def fresh_count(options: Options, batch: int) -> int:
    """The samples of a batch that start again from a new seed: ``task.fresh``, or half the batch (at least 1)."""
    return options.fresh or max(1, batch // 2)


def as_target(images: torch.Tensor) -> torch.Tensor:
    """Pictures on black ``(N, 1|3, H, W)`` → premultiplied RGBA, alpha the brightest channel."""
    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images[:, :3]
    return torch.cat([rgb, rgb.amax(1, keepdim=True)], dim=1)


class GrowDigitsTask(DatasetTask):
    name = "grow-digits"
    summary = "grow a digit of the class a seed's colour names (critic and classifier-free guidance: diversity)"
    trains_with = ("mse", "l1", "wgan-gp", "gan")
    real_samples = True
    Options = Options
    on_device = ("targets", "labels")

    def __init__(self, spec: ModelSpec, tensors: dict[str, torch.Tensor] | None = None, device: Any = "cpu") -> None:
        super().__init__(spec, tensors, device)
        self.options = Options(**spec.task.options.get("settings", {}))
        self.grid = tuple(spec.task.grid)
        self.k = len(spec.task.classes)
        self.config: Any = None

    @classmethod
    def check_config(cls, config: Any) -> None:
        o = cls.Options(**config.task_options)
        DatasetTask.check_split_and_pool(config, o.test_fraction)
        n = fresh_count(o, config.batch) + config.damage_count
        if n > config.batch:
            raise UsageError(f"task.fresh and damage_count ({n}) exceed batch ({config.batch})")

    # -- data ----------------------------------------------------------------------------------------------

    @classmethod
    def read(cls, options: Options, settings: dict[str, Any]) -> Digits:
        from ncacli.io.datasets import load_labelled

        o = options
        d = load_labelled(o.data, settings["size"], settings["padding"], o.test_fraction, o.split_seed, o.data_root)
        if len(d.classes) > len(PALETTE):
            raise UsageError(f"--data {o.data}: {len(d.classes)} classes; seeds have {len(PALETTE)} colours")
        return Digits(d.images, as_target(d.images), d.labels, d.classes, d.train, d.test, d.source)

    @classmethod
    def from_config(cls, config: Any, device: Any) -> GrowDigitsTask:
        data = cls.read_for(config)
        grid = [int(data.images.shape[-2]), int(data.images.shape[-1])]
        spec = ModelSpec(
            replace(config.model_config(), condition_channels=0),
            TaskSpec(
                name=cls.name,
                grid=grid,
                seed_kind="distill",
                seed_positions=[[0.5, 0.5]],
                background="black",
                classes=list(data.classes),
                channels=image_channels(config.channels),
                options={
                    "settings": {**config.task_options},
                    **cls.recorded(config, data),
                    "mode": "regenerating" if config.damage_count else "persistent",
                },
            ),
        )
        task = cls.with_data(spec, data, device)
        task.config = config
        return task

    def describe(self) -> str:
        return f"{self.options.data} grown from a coloured seed"

    def provenance(self) -> dict[str, Any]:
        d = self.load_data()
        out = {"target": self.describe(), "data": d.source, "train_images": len(d.train), "classes": len(d.classes),
               "class_drop": self.options.class_drop}  # fmt: skip
        if self.config is not None:
            out.update(loss=self.config.loss, **objective_provenance(self.config))
        return out

    # -- seeds and labels ----------------------------------------------------------------------------------

    def colours(self) -> torch.Tensor:
        """The seed colours ``(K + 1, 3)``: each class's, then the null colour (a dropped class)."""
        return torch.tensor([*PALETTE[: self.k], NULL_COLOUR], device=self.device)

    def class_seeds(self, classes: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Seeds ``(B, C, H, W)`` of classes ``(B,)`` (``-1``: the null seed) in the middle of ``grid``."""
        h, w = grid or self.grid
        x = torch.zeros(len(classes), self.spec.model.channels, h, w, device=self.device)
        x[:, :3, h // 2, w // 2] = self.colours()[classes.to(self.device)]  # index -1: the null colour
        x[:, 3:, h // 2, w // 2] = 1.0
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def images_of(labels: torch.Tensor) -> torch.Tensor:
        """The data index of each pool label: ``i`` for a sample of image i, ``-1 - i`` where its class was dropped."""
        return torch.where(labels < 0, -1 - labels, labels)

    def classes_of(self, labels: torch.Tensor) -> torch.Tensor:
        """Each pool label's class, ``-1`` where it was dropped."""
        classes = self.load_data().labels[self.images_of(labels)]
        return torch.where(labels < 0, torch.full_like(classes, -1), classes)

    def fresh_labels(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` pool labels: random training images, each class dropped with probability ``class_drop``."""
        labels = self.random_samples(n, generator)
        if self.options.class_drop > 0:
            drop = torch.rand(n, generator=generator, device=self.device) < self.options.class_drop
            labels = torch.where(drop, -1 - labels, labels)
        return labels

    # -- training ------------------------------------------------------------------------------------------

    def seeds(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` seeds of classes drawn as training draws them (what a pool starts from)."""
        return self.class_seeds(self.classes_of(self.fresh_labels(n, generator)))

    def start(self, n: int, grid: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        """The first class's seed (``--class`` picks another, through :meth:`schedule`)."""
        return self.class_seeds(torch.zeros(n, dtype=torch.long), grid)

    def make_pool(self, trainer: Any) -> Any:
        from ncacli.engine import SamplePool

        size = trainer.shard.pool_size
        labels = self.fresh_labels(size, trainer.generator)
        return SamplePool(self.class_seeds(self.classes_of(labels)), size, labels)

    def batch(self, trainer: Any) -> Batch:
        """Sorted by loss, worst first: the ``task.fresh`` worst (half the batch) start again from a new seed, the
        ``damage_count`` best get a hole."""
        idx, x, labels = self.worst_first(trainer)
        n = fresh_count(self.options, len(labels))
        labels[:n] = self.fresh_labels(n, trainer.generator)
        x[:n] = self.class_seeds(self.classes_of(labels[:n]))
        damaged = trainer.shard.damage_count
        if damaged:
            h, w = x.shape[2:]
            mask = random_circles(damaged, h, w, trainer.generator, self.device, tuple(trainer.config.damage_radius))
            x[-damaged:] = self.erase(x[-damaged:], mask)
        return Batch(idx, x, labels)

    def critic_condition(self, classes: torch.Tensor) -> torch.Tensor:
        """What a critic sees beside a picture: the class one-hot ``(B, K, 1, 1)``, zeros for a dropped class."""
        one_hot = torch.zeros(len(classes), self.k + 1, device=self.device)
        one_hot[torch.arange(len(classes), device=self.device), classes] = 1.0  # -1: the last column, dropped
        return one_hot[:, : self.k, None, None]

    def prepare(self, config: Any, generator: torch.Generator) -> None:
        from ncacli.losses.objective import make_objective

        self.objectives = [make_objective(config, None)]
        self.objectives[0].generator = generator

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        from ncacli.losses import Samples

        assert labels is not None
        real = self.load_data().targets[self.images_of(labels)]
        return self.objectives[0](x, Samples(real=real, condition=self.critic_condition(self.classes_of(labels))))

    def terms(self) -> dict[str, float]:
        return dict(self.objectives[0].last)

    def preview(self, trainer: Any) -> bytes:
        """A column per class: three samples grown 96 steps, then a training image of the class."""
        from ncacli.io.images import grid_png

        k = self.k
        classes = torch.arange(k, device=self.device).repeat(3)
        g = torch.Generator(device=self.device).manual_seed(0)
        with torch.no_grad():
            grown = self.rgba(trainer.model.rollout(self.class_seeds(classes), 96, g))
        d = self.load_data()
        train = d.train.to(self.device)
        examples = torch.stack([train[d.labels[train] == c][0] for c in range(k)])
        return grid_png(torch.cat([grown, d.targets[examples]]), scale=3, background="black", columns=k)

    # -- showing -------------------------------------------------------------------------------------------

    def schedule(self, asked: Asked, grid: tuple[int, int], steps: int, every: int = 1) -> Schedule:
        """The seed of the class ``--class`` names (default the first); ``--guidance W`` grows it with
        classifier-free guidance, a model trained with ``class_drop`` only."""
        from ncacli.choices import class_index

        asked.only(("condition", "guidance"), "a grow-digits model grows from its seed (--class: a digit)", self.name)
        names, given = self.spec.task.classes, asked.condition
        index = class_index(names, self.k, given, "--class") if given is not None else 0
        about: dict[str, Any] = {"class": self.spec.task.classes[index]}
        runner = None
        if asked.guidance is not None:
            self.check_guidance(asked.guidance, asked.model)
            scale = asked.guidance
            runner = lambda nca: self.guided(nca, scale, grid)  # noqa: E731
            about["guidance"] = asked.guidance
        return Schedule(None, about, self.class_seeds(torch.tensor([index]), grid), runner)

    def guided(self, nca: Any, scale: float, grid: tuple[int, int] | None = None) -> Any:
        """What grows ``nca`` with classifier-free guidance at ``scale`` on ``grid``: beside the null seed's growth
        (:class:`ncacli.engine.guidance.Guided`)."""
        from ncacli.engine.guidance import Guided
        from ncacli.registry import capabilities

        if "steps" not in capabilities(nca):
            raise UsageError(f"--guidance steps the model beside the null seed's growth; a {nca.config.architecture} "
                             "model does not step")  # fmt: skip
        return Guided(nca, self.class_seeds(torch.tensor([-1]), grid), scale)

    def check_guidance(self, scale: float, model: str = "the model") -> None:
        if not self.options.class_drop > 0:
            raise UsageError(f"--guidance: {model} was trained without class dropout (task.class_drop), so it has "
                             "no unconditional growth to guide with")  # fmt: skip
        if not -10.0 <= scale <= 20.0:
            raise UsageError(f"--guidance {scale}: a scale between -10 and 20 (1: none, 0: no class)")

    # -- evaluating ----------------------------------------------------------------------------------------

    def evaluate(self, model: Any, **options: Any) -> Any:
        from ncacli.tasks.digits_evaluation import evaluate_digits

        return evaluate_digits(model, **options)
