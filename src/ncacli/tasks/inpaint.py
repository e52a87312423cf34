"""Latent inpainting (the NCAtorch review §3.1.4, Figure 10: CelebA faces restored): an NCA in an autoencoder's
latent grid evolves the latents of a picture with a hole in it into those of the whole picture.

Stage 1 trains the latent task's autoencoder on the data set's pictures, complete and perturbed (one to three
circles erased, partly shown, empty: :mod:`ncacli.tasks.autoencoder`), as the review trains its VQ-VAE on perturbed
and complete images. Stage 2 freezes it. A hole is a disc of random centre and radius (``hole_min``–``hole_max`` of
the side) whose pixels are made transparent, so the hole is visible in the state's own alpha; the masked picture
is encoded once, and the state starts as that latent grid (offsets from the empty picture's latent, the latent
task's layout: RGBA at the grid's resolution, latent, hidden channels at zero). Every cell lives and every cell
updates: the decoder draws each cell's pixels from its neighbours' latents too, so the cells around the hole must
change for its edge to blend, and the loss on the whole decoded picture holds the rest where it was. The loss is
the config's objective (``mse``, ``l1``, ``wgan-gp`` or a sum) between the decoded picture and the complete one,
with the latent task's guide and overflow terms. Training draws from a pool of states that keep their pictures:
each batch the ``fresh`` worst start again from a new picture with a new hole.

``nca evaluate`` measures held-out pictures, each with a seeded hole, in the hole and over the whole picture,
before (the masked picture, and the autoencoder's own reconstruction of it) and after the rollout, beside
scikit-image's biharmonic inpainting (:mod:`ncacli.tasks.inpaint_evaluation`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ncacli.errors import UsageError
from ncacli.spec import ModelSpec, TaskSpec
from ncacli.tasks.base import Batch, DatasetTask
from ncacli.tasks.latent_space import (
    LATENT,
    AutoencoderOptions,
    LatentSpace,
    autoencoder_for,
    check_options,
    latent_channels,
    latent_grid,
)

ENCODE_BATCH = 64  # pictures encoded at once
SHOWN_HOLE = 0.25  # the radius of the centred hole that nca grow and nca render cut (a share of the side)


@dataclass(frozen=True)
class Options(AutoencoderOptions):
    data: str = "faces"  # faces (scikit-image's LFW subset, offline), celeba (torchvision's) or a folder of pictures
    data_root: str = ""  # where celeba's files are (default: $NCA_DATA, else torchvision's cache)
    count: int = 0  # the first this many pictures (0: all)
    test_fraction: float = 0.1  # the share held out
    split_seed: int = 0  # the seed of the split
    hole_min: float = 0.15  # the smallest radius of a hole, a share of the side
    hole_max: float = 0.3  # the largest (radii are drawn between the two)
    fresh: int = 2  # pool samples started again from a new picture and hole each batch


class LatentInpaintTask(LatentSpace, DatasetTask):
    name = "latent-inpaint"
    summary = "fill a hole in a picture in an autoencoder's latent space (latent inpainting)"
    perturbations = ("none",)
    capabilities = frozenset()  # the page has no decoder
    Options = Options
    first_stage = True
    train_options = ("autoencoder",)
    trains_with = ("mse", "l1", "wgan-gp")
    real_samples = True  # each picture, complete
    on_device = ("images",)

    def __init__(self, spec: ModelSpec, tensors: dict[str, torch.Tensor] | None = None, device: Any = "cpu") -> None:
        super().__init__(spec, tensors, device)
        self.options = Options(**spec.task.options.get("settings", {}))
        self.grid = tuple(spec.task.grid)
        self.config: Any = None
        self.bind_autoencoder(spec)

    # -- data ----------------------------------------------------------------------------------------------

    @classmethod
    def reads_data(cls, data: str) -> bool:
        """faces and celeba (a folder of pictures: with --task latent-inpaint or its preset)."""
        from ncacli.io.datasets import FACES

        return data in (FACES, "celeba")

    @classmethod
    def read(cls, options: Options, settings: dict[str, Any]):
        from ncacli.io.datasets import load_pictures

        o = options
        return load_pictures(o.data, settings["size"], o.count, o.test_fraction, o.split_seed, o.data_root)

    @classmethod
    def check_config(cls, config: Any) -> None:
        o = Options(**config.task_options)
        check_options(o, config.channels)
        DatasetTask.check_split_and_pool(config, o.test_fraction)
        if not 0.0 < o.hole_min <= o.hole_max < 0.5:
            raise UsageError(
                f"task.hole_min and task.hole_max ({o.hole_min}, {o.hole_max}): a hole's radius is a share of the "
                "side, 0 < hole_min ≤ hole_max < 0.5 (a hole of nothing, or of the whole picture, leaves nothing to "
                "learn)"
            )
        if config.alive_masking:
            raise UsageError("every cell of a picture lives: an inpainting model takes alive_masking = false")
        if not 1 <= o.fresh <= config.batch:
            raise UsageError(f"task.fresh ({o.fresh}) must be between 1 and batch ({config.batch})")

    @classmethod
    def from_config(cls, config: Any, device: Any) -> LatentInpaintTask:
        o, ae_config, reused = autoencoder_for(Options(**config.task_options), config.channels)
        data = cls.read(o, {"size": config.size})
        side = int(data.images.shape[-1])
        grid = latent_grid(side, side, ae_config.factor, "each picture", config.size, 0)
        model = config.model_config()
        spec = ModelSpec(
            model,
            TaskSpec(
                name=cls.name,
                grid=grid,
                seed_kind="zeros",
                seed_positions=[[0.5, 0.5]],
                background="white",
                classes=[],
                channels=latent_channels(ae_config.latent, model.channels),
                options={
                    "settings": asdict(o),
                    "autoencoder": ae_config.to_dict(),
                    "image": [side, side],
                    "size": config.size,
                    "source": data.source,
                    "train": len(data.train),
                    "test": len(data.test),
                    "mode": "persistent",
                },
            ),
        )
        task = cls.with_data(spec, data, device)
        task.config = config
        if reused is not None:
            task.use_autoencoder(reused)
        return task

    def before_training(self, run_dir: Path, quiet: bool) -> None:
        """Stage 1: the autoencoder, on the training pictures (complete and perturbed)."""
        d = self.load_data()
        self.train_autoencoder(d.images[d.train.to(d.images.device)], run_dir, quiet, self.config.seed)

    def describe(self) -> str:
        return f"{self.options.data} (latent inpainting)"

    def provenance(self) -> dict[str, Any]:
        from ncacli.tasks.image import objective_provenance

        d = self.load_data()
        out = {"target": self.describe(), "data": d.source, "train_pictures": len(d.train),
               "test_pictures": len(d.test), "autoencoder": self.options.autoencoder or "stage 1"}  # fmt: skip
        if self.config is not None:
            out.update(loss=self.config.loss, **objective_provenance(self.config))
        return out

    # -- holes and states ----------------------------------------------------------------------------------

    def holes(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` discs ``(n, 1, S, S)`` bool, of random centre (within the picture) and radius."""
        from ncacli.engine.damage import damage_mask

        o, g, dev = self.options, generator, self.device
        radius = o.hole_min + (o.hole_max - o.hole_min) * torch.rand(n, generator=g, device=g.device)
        centre = 0.2 + 0.6 * torch.rand(n, 2, generator=g, device=g.device)
        side = self.spec.task.options["image"][0]
        return damage_mask(side, side, "circle", centre.to(dev), radius.to(dev), device=dev)

    def starts(self, pictures: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
        """The states of ``pictures`` ``(B, 4, S, S)`` with ``holes`` made transparent: the masked picture encoded
        (latent offsets from the empty picture's), RGBA at the grid's resolution, hidden channels zero."""
        masked = pictures * ~holes
        n, c = len(masked), self.spec.model.channels
        x = torch.zeros(n, c, *self.grid, device=self.device)
        x[:, :4] = F.avg_pool2d(masked, self.scale)
        with torch.no_grad():
            for i in range(0, n, ENCODE_BATCH):
                z = self.autoencoder.encode(masked[i : i + ENCODE_BATCH])
                x[i : i + ENCODE_BATCH, LATENT : LATENT + self.latent] = z - self.empty()[None]
        return x.contiguous(memory_format=torch.channels_last)

    def fresh_starts(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.starts(self.load_data().images[labels], self.holes(len(labels), generator))

    def make_pool(self, trainer: Any) -> Any:
        """A pool of masked pictures, each labelled with its picture."""
        from ncacli.engine import SamplePool

        size = trainer.shard.pool_size
        labels = self.random_samples(size, trainer.generator)
        return SamplePool(self.fresh_starts(labels, trainer.generator), size, labels)

    def batch(self, trainer: Any) -> Batch:
        """Sorted by loss, worst first: the ``fresh`` worst start again from a new picture with a new hole."""
        g = trainer.generator
        idx, x, labels = self.worst_first(trainer)
        k = self.options.fresh
        labels[:k] = self.random_samples(k, g)
        x[:k] = self.fresh_starts(labels[:k], g)
        return Batch(idx, x, labels)

    def seeds(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.fresh_starts(self.random_samples(n, generator), generator)

    def start(self, n: int, grid: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        """What ``nca grow`` and ``nca render`` start from: the first ``n`` held-out pictures (cycled), each with a
        centred hole of radius ``SHOWN_HOLE``."""
        if tuple(grid) != self.grid:
            h, w = self.grid
            raise UsageError(f"--grid: an inpainting model works on its pictures' grid, {h}x{w}")
        from ncacli.engine.damage import damage_mask

        test = self.test_index()
        pick = test[torch.arange(n) % len(test)]
        pictures = self.load_data().images[pick]
        side = pictures.shape[-1]
        hole = damage_mask(side, side, "circle", (0.5, 0.5), SHOWN_HOLE, device=self.device)
        self.shown = (pictures, pictures * ~hole)
        return self.starts(pictures, hole.expand(n, -1, -1, -1))

    # -- training ------------------------------------------------------------------------------------------

    def condition(self, labels: torch.Tensor | None) -> None:
        return None

    def prepare(self, config: Any, generator: torch.Generator) -> None:
        """The objective on the decoded picture (the regularisers read the state itself here)."""
        from ncacli.losses.objective import make_objective

        self.objectives = [make_objective(replace(config, tv_weight=0.0, overflow_weight=0.0), None)]
        self.objectives[0].generator = generator

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Per sample: the objective between the decoded picture and the complete one, and the state's own terms
        (:meth:`LatentSpace.state_terms`)."""
        from ncacli.losses import Samples

        assert labels is not None
        whole = self.load_data().images[labels]
        judged = self.objectives[0](self.rgba(x), Samples(real=whole, condition=None))
        self.last = dict(self.objectives[0].last)
        return judged + self.state_terms(x, F.avg_pool2d(whole, self.scale))

    def terms(self) -> dict[str, float]:
        return dict(getattr(self, "last", {}))

    def preview(self, trainer: Any) -> bytes:
        """Six held-out pictures, a column each: with the hole (decoded), after 32 and 64 steps, the truth."""
        from ncacli.io.images import grid_png

        g = torch.Generator(device=self.device).manual_seed(0)
        x = self.start(6, self.grid, g)
        rows = [self.shown[1]]
        with torch.no_grad():
            for steps in (32, 32):
                x = trainer.model.rollout(x, steps, g)
                rows.append(self.rgba(x))
        rows.append(self.shown[0])
        return grid_png(torch.cat(rows), scale=2, columns=6)

    # -- showing and measuring -----------------------------------------------------------------------------

    def schedule(self, asked: Any, grid: tuple[int, int], steps: int, every: int = 1) -> Any:
        """What ``nca grow`` and ``nca render`` start from: ``--input`` names the picture (``#N``, held-out picture
        N, default #0; or a picture file of the model's size), with the hole ``--mask`` names
        (:meth:`hole_of`)."""
        from ncacli.tasks.base import Schedule

        why = "an inpainting model takes --input (#N, a held-out picture, or a picture file) and --mask"
        asked.only(("input", "mask"), why, self.name)
        name = asked.input or "#0"
        side = self.spec.task.options["image"][0]
        if name.startswith("#") and name[1:].isdigit():
            test = self.test_index()
            if not 0 <= int(name[1:]) < len(test):
                raise UsageError(f"--input {name}: the held-out split has pictures #0 … #{len(test) - 1}")
            picture = self.load_data().images[test[int(name[1:])]][None]
        else:
            from ncacli.io.datasets import picture_file

            picture = picture_file(name, side, "--input picture")[None].to(self.device)
        hole, about = self.hole_of(asked.mask, side)
        self.shown = (picture, picture * ~hole)
        return Schedule(about={"input": name, "hole": about}, start=self.starts(picture, hole))

    def hole_of(self, mask: str | None, side: int) -> tuple[torch.Tensor, str]:
        """The hole ``--mask`` names ``(1, 1, S, S)`` bool and its description: a centred shape of radius
        ``SHOWN_HOLE`` (default a circle; a half cut at the middle), or a picture file, its white pixels the hole
        (brightness above one half, a picture of the model's size)."""
        from ncacli.engine.damage import SHAPES, damage_mask

        if mask is None or mask in SHAPES:
            shape = mask or "circle"
            hole = damage_mask(side, side, shape, (0.5, 0.5), SHOWN_HOLE, device=self.device)
            return hole, (f"a centred {shape}, radius {SHOWN_HOLE}" if shape in ("circle", "square") else
                          f"the {shape} half")  # fmt: skip
        from ncacli.io.datasets import picture_file

        if not Path(mask).expanduser().is_file():
            raise UsageError(f"--mask {mask}: neither a shape ({', '.join(SHAPES)}) nor a picture file")
        hole = (picture_file(mask, side, "--mask picture")[:3].mean(0) > 0.5)[None, None].to(self.device)
        share = float(hole.float().mean())
        if share == 0.0:
            raise UsageError(f"--mask {mask}: no white pixel, so no hole to fill (white marks the hole)")
        if share == 1.0:
            raise UsageError(f"--mask {mask}: all white, a hole over the whole picture leaves nothing to fill it from")
        return hole, f"{mask} ({share:.0%} of the pixels)"

    def frame(self, states: torch.Tensor, condition: torch.Tensor | None, scale: int) -> Any:
        """The first sample between the picture with its hole and the complete one: ``(S·s, 3·S·s, 3)`` uint8."""
        import numpy as np

        from ncacli.io.images import to_pixels

        pixels = self.display_pixels(scale)
        whole, masked = getattr(self, "shown", (None, None))
        panels = [self.rgba(states[:1])[0]] if whole is None else [masked[0], self.rgba(states[:1])[0], whole[0]]
        return np.concatenate([to_pixels(p, scale=pixels, background="white") for p in panels], axis=1)

    def evaluate(self, model: Any, **options: Any) -> Any:
        from ncacli.tasks.inpaint_evaluation import evaluate_inpainting

        return evaluate_inpainting(model, **options)
