"""Image-to-image translation (the NCAtorch review §3.1.3, Edges-to-Handbags): grow the target picture of an input.

The input (an edge map, or a picture) sits in the condition channels, which the update reads and never writes; the
output grows in the visible channels (RGBA, premultiplied) from the seed, as the emoji do, and the hidden channels
carry the rest. Training draws batches from a pool whose states carry on from earlier iterations, each with its
pair: the worst is replaced by a seed on a new training pair, ``damage_count`` of the best get a hole and
``mutation_count`` of the next are given another pair's input (the state kept), so the model learns to repaint.
The objective is the config's ``loss``, each sample judged against its own pair: ``mse`` or ``l1`` to the target,
``wgan-gp`` (a critic that sees the input beside the picture, pix2pix's pairing), or a sum (``l1+wgan-gp``).
Data: ``edges2emoji`` (built offline from Twemoji, :mod:`ncacli.io.pairs`) or a folder in pix2pix's layout; the
held-out pairs' indices go into the model file, and ``nca evaluate`` measures the growing protocol on them, each
trial one held-out pair.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from ncacli.engine import random_circles
from ncacli.errors import UsageError
from ncacli.spec import ModelSpec, TaskSpec, image_channels
from ncacli.tasks.base import Asked, Batch, DatasetTask, Schedule, Trials
from ncacli.tasks.image import objective_provenance


@dataclass(frozen=True)
class Options:
    data: str = "edges2emoji"  # edges2emoji (built from the bundled Twemoji) or a folder in pix2pix's layout
    count: int = 512  # edges2emoji: how many emoji (a seeded choice of the single-codepoint ones)
    test_fraction: float = 0.1  # edges2emoji: the share held out (a folder's val/ is its held-out split)
    split_seed: int = 0  # edges2emoji: the seed of the choice and of the split


class TranslateTask(DatasetTask):
    name = "translate"
    summary = "grow the picture an input image stands for (image-to-image translation, edges to emoji)"
    perturbations = ("damage", "none", "mutation")
    capabilities = frozenset({"page"})
    trains_with = ("mse", "l1", "wgan-gp", "gan")
    real_samples = True  # each pair's target
    Options = Options
    on_device = ("inputs", "targets")

    def __init__(self, spec: ModelSpec, tensors: dict[str, torch.Tensor] | None = None, device: Any = "cpu") -> None:
        super().__init__(spec, tensors, device)
        self.options = self.Options(**spec.task.options.get("settings", {}))
        self.grid = tuple(spec.task.grid)  # self.data: Pairs
        self.config: Any = None  # a training run's config (from_config)

    @classmethod
    def reads_data(cls, data: str) -> bool:
        """edges2emoji (a folder of pairs: with --task translate)."""
        from ncacli.io.pairs import EDGES2EMOJI

        return data == EDGES2EMOJI

    @classmethod
    def check_config(cls, config: Any) -> None:
        o = cls.Options(**config.task_options)
        DatasetTask.check_split_and_pool(config, o.test_fraction)
        if 1 + config.damage_count + config.mutation_count > config.batch:
            raise UsageError(
                f"a seed, damage_count and mutation_count ({1 + config.damage_count + config.mutation_count}) "
                f"exceed batch ({config.batch})"
            )

    # -- data ----------------------------------------------------------------------------------------------

    @classmethod
    def read(cls, options: Options, settings: dict[str, Any]):
        from ncacli.io.pairs import load_pairs

        o = options
        return load_pairs(o.data, settings["size"], settings["padding"], o.count, o.test_fraction, o.split_seed)

    @classmethod
    def from_config(cls, config: Any, device: Any) -> TranslateTask:
        data = cls.read_for(config)
        inputs = int(data.inputs.shape[1])
        grid = [int(data.inputs.shape[-2]), int(data.inputs.shape[-1])]
        model = replace(config.model_config(), condition_channels=inputs)
        channels = {**image_channels(config.channels), "input": list(range(inputs))}
        spec = cls.pairs_spec(config, data, model, grid, channels, {"settings": {**config.task_options}})
        task = cls.with_data(spec, data, device)
        task.config = config
        return task

    @classmethod
    def pairs_spec(
        cls, config: Any, data: Any, model: Any, grid: list[int], channels: dict, options: dict
    ) -> ModelSpec:
        """The model spec of a run on ``data``'s pairs: a seed in the middle (by default), on white, the pairs'
        source and split sizes beside the task's own ``options``."""
        return ModelSpec(
            model,
            TaskSpec(
                name=cls.name,
                grid=grid,
                seed_kind=config.seed_kind,
                seed_positions=[list(p) for p in config.seed_positions] or [[0.5, 0.5]],
                background="white",
                classes=[],
                channels=channels,
                options={
                    **options,
                    **cls.recorded(config, data),
                    "mode": "regenerating" if config.damage_count else "persistent",
                },
            ),
        )

    def describe(self) -> str:
        return f"{self.options.data} (image-to-image)"

    def provenance(self) -> dict[str, Any]:
        d = self.load_data()
        return {"target": self.describe(), "data": d.source, "train_pairs": len(d.train), "test_pairs": len(d.test),
                "loss": self.config.loss if self.config is not None else None,
                **(objective_provenance(self.config) if self.config is not None else {})}  # fmt: skip

    # -- training ------------------------------------------------------------------------------------------

    def seeds(self, n: int, generator: torch.Generator) -> torch.Tensor:
        from ncacli.engine import make_seed

        t = self.spec.task
        x = make_seed(n, self.spec.model.channels, *self.grid, t.seed_positions, self.device, t.seed_kind, generator)
        return x.contiguous(memory_format=torch.channels_last)

    def batch(self, trainer: Any) -> Batch:
        """Sorted by loss, worst first: the worst starts again from a seed on a new pair, the ``damage_count``
        best get a hole, the ``mutation_count`` next best another pair's input."""
        g, n = trainer.generator, trainer.shard.batch
        idx, x, labels = self.worst_first(trainer)
        x[:1] = trainer.seeds(1)
        labels[:1] = self.random_samples(1, g)
        damaged = trainer.shard.damage_count
        if damaged:
            h, w = x.shape[2:]
            mask = random_circles(damaged, h, w, g, self.device, tuple(trainer.config.damage_radius))
            x[-damaged:] = self.erase(x[-damaged:], mask)
        m = trainer.shard.mutation_count
        if m:
            labels[n - damaged - m : n - damaged] = self.random_samples(m, g)
        return Batch(idx, x, labels)

    def condition(self, labels: torch.Tensor | None) -> torch.Tensor:
        assert labels is not None
        return self.load_data().inputs[labels]

    def prepare(self, config: Any, generator: torch.Generator) -> None:
        """The objective, each sample judged against its own pair (see the module)."""
        from ncacli.losses.objective import make_objective

        self.objectives = [make_objective(config, None)]
        self.objectives[0].generator = generator

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        from ncacli.losses import Samples

        assert labels is not None
        d = self.load_data()
        return self.objectives[0](x, Samples(real=d.targets[labels], condition=d.inputs[labels]))

    def terms(self) -> dict[str, float]:
        return dict(self.objectives[0].last)

    def preview(self, trainer: Any) -> bytes:
        """Six held-out pairs, a column each: the input, the picture grown after 96 and 200 steps, the target."""
        from ncacli.io.images import grid_png

        pick = self.test_index()[:6]
        cond = self.condition(pick)
        g = torch.Generator(device=self.device).manual_seed(0)
        rows = [self.input_picture(cond)]
        with torch.no_grad():
            x = trainer.seeds(len(pick), g)
            for steps in (96, 104):
                x = trainer.model.rollout(x, steps, g, condition=cond)
                rows.append(self.rgba(x))
        rows.append(self.load_data().targets[pick])
        return grid_png(torch.cat(rows), scale=2, columns=len(pick))

    @staticmethod
    def input_rgba(inputs: torch.Tensor) -> torch.Tensor:
        """Inputs as pictures, premultiplied RGBA ``(B, 4, H, W)``: an edge map dark lines on white, a picture
        itself."""
        if inputs.shape[1] == 1:
            ink = 1.0 - inputs.clamp(0, 1)
            return torch.cat([ink.expand(-1, 3, -1, -1), torch.ones_like(ink)], dim=1)
        return torch.cat([inputs[:, :3].clamp(0, 1), torch.ones_like(inputs[:, :1])], dim=1)

    def input_picture(self, condition: torch.Tensor) -> torch.Tensor:
        """What the cells read, as a picture ``(B, 4, H, W)`` (here the input itself)."""
        return self.input_rgba(condition)

    # -- showing -------------------------------------------------------------------------------------------

    def pair_of(self, text: str) -> int:
        """A pair named by the user: ``#N`` (held-out pair N) or a pair's name (an emoji's codepoints, a file)."""
        d, test = self.load_data(), self.test_index()
        if text.startswith("#") and text[1:].isdigit():
            n = int(text[1:])
            if not 0 <= n < len(test):
                raise UsageError(f"{text}: the held-out split has pairs #0 … #{len(test) - 1}")
            return int(test[n])
        if text in d.names:
            return d.names.index(text)
        raise UsageError(f"input {text!r}: not #N (a held-out pair) nor a pair's name (e.g. {d.names[int(test[0])]})")

    def schedule(self, asked: Asked, grid: tuple[int, int], steps: int, every: int = 1) -> Schedule:
        """The input the cells read (``--input``: ``#N``, held-out pair N, or a pair's name; default #0), switched to
        ``--input-to`` after ``--switch-at``."""
        names = self.load_data().names
        schedule, pairs = self.input_schedule(asked, grid, "a translation model", "#0", self.pair_of, names.__getitem__)
        inputs = self.condition(torch.tensor(pairs, device=self.device))
        self.shown = [(inputs[i : i + 1], self.load_data().targets[pair]) for i, pair in enumerate(pairs)]
        return schedule

    def page_start(self, grid: tuple[int, int], asked: Asked) -> tuple[dict[str, Any], dict[str, Any]]:
        """The page's data: the input it starts from (``--input``: ``#N`` or a pair's name; default #0) and the
        first eight held-out inputs, to load from the page, which the mouse draws on; the cells grow the picture
        from the seed. An edge map is drawn with 1s on 0 (edges2emoji), a picture in black on white."""
        asked.only(("input",), "a translation model's page takes --input", self.name)
        first = self.pair_of(asked.input or "#0")
        shown = [int(i) for i in self.test_index()[:8]]
        inputs = self.condition(torch.tensor([first, *shown], device=self.device))
        planes = self.page_planes(inputs, grid, "a translation model's page")
        names = self.load_data().names
        about = {"index": first, "pair": names[first]}
        data = {
            "classes": [],
            "input": {
                "channels": int(inputs.shape[1]),
                "image": planes[0],
                "about": about,
                "view": "picture",
                "ink": 1.0 if inputs.shape[1] == 1 else 0.0,
            },  # fmt: skip
            "examples": [{"name": f"#{j} {names[i]}", "index": i, "image": planes[j + 1]} for j, i in enumerate(shown)],
        }
        return data, {"input": names[first]}

    def page_name(self) -> str:
        return self.describe()

    def frame(self, states: torch.Tensor, condition: torch.Tensor | None, scale: int) -> Any:
        """The first sample between its input and, for a pair the growth was scheduled with, its target:
        ``(H·p, 3·W·p, 3)`` uint8 (a video frame), ``p`` display pixels per picture pixel."""
        import numpy as np

        from ncacli.io.images import to_pixels

        assert condition is not None
        panels = [self.input_picture(condition[:1])[0], self.rgba(states[:1])[0]]
        for inputs, target in getattr(self, "shown", []):
            if torch.equal(inputs, condition[:1]):
                panels.append(target)
                break
        pixels = self.display_pixels(scale)
        return np.concatenate([to_pixels(p, scale=pixels, background="white") for p in panels], axis=1)

    # -- evaluating ----------------------------------------------------------------------------------------

    def trials(self, trials: int, seed: int, perturb: str) -> Trials:
        """The growing protocol's trials on held-out pairs: ``(targets (N, 4, H, W), pair of each trial, pair each
        switches to for a mutation)``, the pairs cycled through in order, the switches a seeded draw of others."""
        test = self.test_index()
        labels = test[torch.arange(trials) % len(test)]
        mutated = None
        if perturb == "mutation":
            if len(test) < 2:
                raise UsageError("--perturb mutation gives a trial another held-out pair's input: there is only one")
            shift = torch.randint(1, len(test), (trials,), generator=torch.Generator().manual_seed(seed + 2))
            mutated = test[(torch.arange(trials) % len(test) + shift) % len(test)]
        return self.load_data().targets, labels, mutated
