"""Self-classifying digits (the Distill self-classifying MNIST article; the NCAtorch review §3.3.1, Table 3).

The state: ``K`` class channels first, then hidden channels. Beside it, in the condition channels the update
never writes, the input image; with ``alive_from = "input"`` only the cells the digit covers live (the
others stay zero). Each living cell votes through its class channels; the image's prediction is the
argmax of their mean over its cells. Training draws batches from a pool whose states carry on from
earlier iterations (their predictions recycled), starts ``fresh`` samples from zero on a new image, and
swaps the input of ``mutation_count`` pooled samples for an image of another class, so the model learns to
change its mind. The loss is MSE to the one-hot class or pixel-wise cross-entropy (the NCAtorch review's
eq. 8), over the digit's cells or every cell (eq. 7).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from ncacli.errors import UsageError
from ncacli.spec import ModelSpec, TaskSpec
from ncacli.tasks.base import Asked, Batch, DatasetTask, Schedule

# the class colours of the pictures and the page (ten well-separated hues, then they repeat)
PALETTE = [
    (0.90, 0.10, 0.10), (0.95, 0.55, 0.05), (0.85, 0.80, 0.05), (0.30, 0.75, 0.15), (0.05, 0.65, 0.55),
    (0.10, 0.60, 0.95), (0.20, 0.25, 0.85), (0.55, 0.20, 0.85), (0.90, 0.30, 0.70), (0.45, 0.30, 0.20),
]  # fmt: skip
LOSSES = ("mse", "ce")
CELLS = ("digit", "all")


@dataclass(frozen=True)
class Options:
    data: str = "digits"  # digits (scikit-learn's, bundled), mnist, cifar10, or a folder of class sub-folders
    data_root: str = ""  # where torchvision keeps MNIST / CIFAR-10 ("" = $NCA_DATA or ~/.cache/torch/datasets)
    loss: str = "mse"  # mse (to the one-hot class) or ce (pixel-wise cross-entropy)
    cells: str = "digit"  # which cells the loss reads: digit (where the input lives) or all
    test_fraction: float = 0.2  # digits and folders: the share held out for nca evaluate
    split_seed: int = 0  # digits and folders: the seed of the held-out split
    fresh: int = 2  # samples per batch started from zero on a new image


class ClassifyTask(DatasetTask):
    name = "classify"
    summary = "classify the image the cells sit on (self-classifying digits)"
    perturbations = ("mutation", "none")
    capabilities = frozenset({"page"})
    Options = Options
    on_device = ("images", "labels")

    def __init__(self, spec: ModelSpec, tensors: dict[str, torch.Tensor] | None = None, device: Any = "cpu") -> None:
        super().__init__(spec, tensors, device)
        self.options = Options(**spec.task.options.get("settings", {}))
        self.k = len(spec.task.classes)  # self.data: LabelledImages
        self.grid = tuple(spec.task.grid)

    @classmethod
    def reads_data(cls, data: str) -> bool:
        """digits, mnist, cifar10, or a folder (of class folders, or a torchvision root)."""
        from pathlib import Path

        from ncacli.io.datasets import SOURCES

        return data in SOURCES or Path(data).is_dir()

    @classmethod
    def preset_for(cls, data: str | None = None) -> str | None:
        """The preset of the data set: classify-mnist, classify-cifar10, else classify-digits."""
        return {"mnist": "classify-mnist", "cifar10": "classify-cifar10"}.get(data or "", "classify-digits")

    @staticmethod
    def check_config(config: Any) -> None:
        o = Options(**config.task_options)
        for key, allowed in (("loss", LOSSES), ("cells", CELLS)):
            if getattr(o, key) not in allowed:
                raise UsageError(f"task_options.{key} must be one of {', '.join(allowed)}, not {getattr(o, key)!r}")
        DatasetTask.check_split_and_pool(config, o.test_fraction)
        if o.fresh + config.mutation_count > config.batch:
            raise UsageError(
                f"task.fresh + mutation_count ({o.fresh + config.mutation_count}) exceed batch ({config.batch})"
            )

    # -- data ----------------------------------------------------------------------------------------------

    @classmethod
    def read(cls, options: Options, settings: dict[str, Any]):
        from ncacli.io.datasets import load_labelled

        o = options
        return load_labelled(o.data, settings["size"], settings["padding"], o.test_fraction, o.split_seed, o.data_root)

    @classmethod
    def from_config(cls, config: Any, device: Any) -> ClassifyTask:
        data = cls.read_for(config)
        k, inputs = len(data.classes), int(data.images.shape[1])
        if config.channels <= k:
            raise UsageError(f"channels ({config.channels}) must exceed the {k} classes: class channels, then hidden")
        grid = [int(data.images.shape[-2]), int(data.images.shape[-1])]
        # every cell lives on an RGB photograph; on a digit only the cells it covers
        model = replace(config.model_config(), condition_channels=inputs, alive_from="input", alive_masking=inputs == 1)
        spec = ModelSpec(
            model,
            TaskSpec(
                name=cls.name,
                grid=grid,
                seed_kind="zeros",
                seed_positions=[],
                background="white",
                classes=data.classes,
                channels={
                    "class": list(range(k)),
                    "hidden": list(range(k, config.channels)),
                    "input": list(range(inputs)),
                },  # the condition's channels
                options={
                    "settings": {**config.task_options},
                    **cls.recorded(config, data),
                },
            ),
        )
        return cls.with_data(spec, data, device)

    def describe(self) -> str:
        return f"{self.options.data} ({self.k} classes)"

    def provenance(self) -> dict[str, Any]:
        d = self.load_data()
        return {"target": self.describe(), "data": d.source, "train_images": len(d.train), "test_images": len(d.test)}

    # -- training ------------------------------------------------------------------------------------------

    def seeds(self, n: int, generator: torch.Generator) -> torch.Tensor:
        h, w = self.grid
        x = torch.zeros(n, self.spec.model.channels, h, w, device=self.device)
        return x.contiguous(memory_format=torch.channels_last)

    def start(self, n: int, grid: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        return torch.zeros(n, self.spec.model.channels, *grid)

    def batch(self, trainer: Any) -> Batch:
        g, n, pool = trainer.generator, trainer.shard.batch, trainer.pool
        idx, x = pool.sample(n, g)
        labels = pool.labels[idx].clone()
        fresh = min(self.options.fresh, n)
        x[:fresh] = trainer.seeds(fresh)
        labels[:fresh] = self.random_samples(fresh, g)
        m = trainer.shard.mutation_count
        if m:
            labels[fresh : fresh + m] = self.other_images(labels[fresh : fresh + m], g)
        return Batch(idx, x, labels)

    def other_images(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """For each image, a random training image of another class."""
        d = self.load_data()
        out = self.random_samples(len(index), generator)
        for _ in range(16):  # redraw the few that landed on the same class
            same = d.labels[out] == d.labels[index]
            if not same.any():
                break
            out = torch.where(same, self.random_samples(len(index), generator), out)
        return out

    def condition(self, labels: torch.Tensor | None) -> torch.Tensor:
        assert labels is not None
        return self.load_data().images[labels]

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        assert labels is not None
        d = self.load_data()
        cls_, inp = d.labels[labels], d.images[labels]
        logits = x[:, : self.k]
        mask = self.cells(inp) if self.options.cells == "digit" else torch.ones_like(inp[:, :1])
        if self.options.loss == "ce":
            target = cls_.view(-1, 1, 1).expand(-1, *logits.shape[2:])
            per_cell = F.cross_entropy(logits, target, reduction="none")[:, None]
        else:
            onehot = F.one_hot(cls_, self.k).float()[:, :, None, None]
            per_cell = ((logits - onehot) ** 2).mean(1, keepdim=True)
        return (per_cell * mask).sum((1, 2, 3)) / mask.sum((1, 2, 3)).clamp_min(1.0)

    def cells(self, inputs: torch.Tensor) -> torch.Tensor:
        """The cells that live on ``inputs`` ``(B, Cin, H, W)`` → ``(B, 1, H, W)`` float."""
        if not self.spec.model.alive_masking:
            return torch.ones_like(inputs[:, :1])
        return (inputs[:, :1] > self.spec.model.alive_threshold).float()

    def preview(self, trainer: Any) -> bytes:
        """Ten test images (one per class where it can), as they read after 30 and 150 steps."""
        from ncacli.io.images import png_bytes

        pick = self.examples()
        cond = self.condition(pick)
        g = torch.Generator(device=self.device).manual_seed(0)
        rows = []
        with torch.no_grad():
            x = trainer.seeds(len(pick))
            for steps in (30, 120):
                x = trainer.model.rollout(x, steps, g, condition=cond)
                rows.append(self.picture(x, cond))
        grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)  # (3, 2H, nW)
        return png_bytes(_upscale(grid, 4))

    def examples(self, per_class: int = 1) -> torch.Tensor:
        """The first test image of each class (for pictures)."""
        d, test = self.load_data(), self.test_index()
        out = []
        for k in range(self.k):
            rows = test[d.labels[test] == k][:per_class]
            out.append(rows)
        return torch.cat(out) if out else test[:10]

    def image_of(self, text: str) -> int:
        """An input named by the user: a class (index or name: its first test image) or ``#N`` (test image N)."""
        d, test = self.load_data(), self.test_index()
        if text.startswith("#"):
            n = int(text[1:])
            if not 0 <= n < len(test):
                raise UsageError(f"{text}: the test split has images #0 … #{len(test) - 1}")
            return int(test[n])
        names = self.spec.task.classes
        k = names.index(text) if text in names else int(text) if text.isdigit() and int(text) < self.k else None
        if k is None:
            raise UsageError(f"input {text!r}: not a class of this model ({', '.join(names)}) nor #N (a test image)")
        return int(test[d.labels[test] == k][0])

    # -- showing -------------------------------------------------------------------------------------------

    def votes(self, x: torch.Tensor) -> torch.Tensor:
        """Each cell's class: ``(B, H, W)`` long."""
        return x[:, : self.k].argmax(1)

    def predict(self, x: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """The image's class: argmax of the class channels' mean over its living cells → ``(B,)``."""
        mask = self.cells(inputs)
        mean = (x[:, : self.k] * mask).sum((2, 3)) / mask.sum((2, 3)).clamp_min(1.0)
        return mean.argmax(1)

    def picture(self, states: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Each living cell in its predicted class's colour, as dark as the input's ink, on white."""
        assert condition is not None
        palette = torch.tensor(PALETTE, device=states.device)[torch.arange(self.k, device=states.device) % len(PALETTE)]
        colour = palette[self.votes(states)].permute(0, 3, 1, 2)  # (B, 3, H, W)
        ink = condition.expand(states.shape[0], -1, -1, -1)
        ink = ink[:, :1] if ink.shape[1] == 1 else ink.mean(1, keepdim=True)
        live = self.cells(condition.expand(states.shape[0], -1, -1, -1))
        if condition.shape[1] == 1:
            return 1.0 - live * ink.clamp(0, 1) * (1.0 - colour)
        return 0.5 * condition.expand_as(colour) + 0.5 * colour  # a photograph: tinted by the votes

    def frame(self, states: torch.Tensor, condition: torch.Tensor, scale: int):
        """The first sample's picture, ``scale`` pixels per cell, over a legend of class colours: ``(H, W, 3)``
        uint8 (a video frame)."""
        import numpy as np
        from PIL import Image, ImageDraw

        big = _upscale(self.picture(states[:1], condition[:1])[0], scale)
        cell, step = 12, 30  # a swatch and its name (up to 3 characters) per 30 pixels, as many rows as needed
        per_row = max(1, big.shape[1] // step)
        strip = Image.new("RGB", (big.shape[1], -(-self.k // per_row) * (cell + 2) + 2), "white")
        draw = ImageDraw.Draw(strip)
        for i, name in enumerate(self.spec.task.classes):
            x, y = int((i % per_row) * step), (i // per_row) * (cell + 2) + 2
            colour = tuple(int(v * 255) for v in PALETTE[i % len(PALETTE)])
            draw.rectangle([x + 1, y, x + cell - 2, y + cell - 2], fill=colour)
            draw.text((x + cell, y - 1), name[:3], fill="black")
        return np.concatenate([big, np.asarray(strip)], axis=0)

    not_grown = "a classifier runs on an input; show it with `nca render MODEL out.gif`"

    def schedule(self, asked: Asked, grid: tuple[int, int], steps: int, every: int = 1) -> Schedule:
        """The input image the cells read (``--input``: a class, its first test image, or ``#N``; default class
        0), switched to ``--input-to`` after ``--switch-at`` (the Distill self-classifying figures)."""
        return self.input_schedule(asked, grid, "a classifier", "0", self.image_of, self.about)[0]

    def page_start(self, grid: tuple[int, int], asked: Asked) -> tuple[dict[str, Any], dict[str, Any]]:
        """The page's data: the class colours, the input it starts from (``--input`` or ``--condition``: a class,
        its first test image, or ``#N``, test image N; default class 0) and the first test image of each class,
        to load from the page. Images are lists of their channels' ``H×W`` planes (float32 values, exactly),
        centred in ``grid`` when it is larger than the images."""
        asked.only(("input", "condition"), "a classifier's page takes --input", self.name)
        first = self.image_of(asked.input or asked.condition or "0")
        examples = [int(i) for i in self.examples()]
        labels = self.load_data().labels
        images = self.condition(torch.tensor([first, *examples], device=self.device))
        c = images.shape[1]
        planes = self.page_planes(images, grid, "a classifier's page")
        names = self.spec.task.classes
        data = {
            "palette": [list(PALETTE[i % len(PALETTE)]) for i in range(len(names))],
            "input": {"channels": c, "image": planes[0], "about": self.about(first)},
            "examples": [
                {"class": names[int(labels[i])], "index": i, "image": planes[j + 1]} for j, i in enumerate(examples)
            ],
        }
        return data, {"input": self.about(first)}

    def page_name(self) -> str:
        return self.describe()

    def about(self, index: int) -> dict[str, Any]:
        """An input image for a summary: its index in the data set and its class."""
        return {"index": index, "class": self.spec.task.classes[int(self.load_data().labels[index])]}

    # -- evaluating ----------------------------------------------------------------------------------------

    def evaluate(self, model: Any, perturb=None, shape=None, trials=None, seed=0, stage1=None, stage2=149,
                 perturb_at=150, final=449, curve_every=0, frames=None, **_: Any) -> Any:  # fmt: skip
        """Accuracy on the test split over time, perturbed by a swap of input (default) or not
        (:mod:`ncacli.tasks.classify_evaluation`); the options of the growing protocol it has no use for are ignored."""
        from ncacli.evaluation.protocol import check_perturbation
        from ncacli.tasks.classify_evaluation import evaluate_classifier

        if frames is not None:
            raise UsageError(f"--frames counts the frames a video model predicts; {model.path} is a classifier")
        perturb, _ = check_perturbation(model, perturb, "mutation", shape)
        return evaluate_classifier(model, perturb, trials, seed, stage1 or (20, 30), stage2, perturb_at, final,
                                   curve_every)  # fmt: skip


def _upscale(rgb: torch.Tensor, scale: int):
    import numpy as np

    a = (rgb.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)
