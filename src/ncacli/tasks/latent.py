"""Latent NCAs (the NCAtorch review §3.1.4–3.1.5, algorithm 2): an NCA that grows a high-resolution image in the
latent grid of an autoencoder with 8× spatial compression.

Training has two stages, both in the run directory and both resumable. Stage 1 trains the autoencoder (a VQ-VAE
by default, :mod:`ncacli.engine.autoencoder`) on the target images, on damaged copies and on partly grown ones, so
that damaged and half-grown latents decode sensibly (:mod:`ncacli.tasks.autoencoder`); ``task.autoencoder``
names a trained one to reuse instead. Stage 2 freezes it and trains the NCA: the state is ``latent`` channels the
decoder reads, then hidden channels; the seed is the latent grid of an empty image with the hidden channels of the
seed cell set to 1; the pool, damage and class mutation work on latent states as in pixel space, and the decoded
picture's MSE to the target trains the NCA only.

The model file carries the autoencoder (encoder and decoder) beside the NCA, so every verb works from that one file:
pictures and videos are decoded, damage is cut in pixel space and re-encoded (``damage_space = "pixel"``) or cut in
the latent grid (``"latent"``: the cells return to the empty image's latent, hidden channels to zero).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ncacli.engine import one_hot
from ncacli.errors import NcaError, UsageError
from ncacli.spec import ModelSpec, TaskSpec
from ncacli.tasks.image import ImageTask, class_names
from ncacli.tasks.latent_space import (
    AutoencoderOptions,
    LatentSpace,
    autoencoder_for,
    check_options,
    latent_channels,
    latent_grid,
)

WINDOW_MARGIN = 4  # latent cells around a loss window: more than the decoder reads (3 cells each way)


@dataclass(frozen=True)
class Options(AutoencoderOptions):
    loss_window: int = 0  # stage 2's loss on a random window this many pixels across, decoded alone (0: all)
    ae_data: str = ""  # a data set stage 1 learns beside the targets: twemoji (ae_count of them) or a folder
    ae_count: int = 64  # ae_data = twemoji: how many (a seeded choice, as edges2emoji's); a folder: the first (0: all)


def data_set(o: Options, padding: int, image: tuple[int, int]) -> torch.Tensor | None:
    """The pictures ``ae_data`` names, each fitted and padded into the target's ``image`` grid, or None."""
    from ncacli.io.images import centred, image_to_rgba, twemoji_pictures

    if not o.ae_data:
        return None
    fit = min(image) - 2 * padding  # each picture fits the target's grid whatever its shape
    if o.ae_data == "twemoji":
        pictures = list(twemoji_pictures(o.ae_count, fit, padding, 0, "task.ae_data = twemoji")[0])
    else:
        from ncacli.io.datasets import IMAGE_SUFFIXES

        folder = Path(o.ae_data).expanduser()
        if not folder.is_dir():
            raise NcaError(f"task.ae_data = {o.ae_data}: neither twemoji nor a folder of pictures")
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise NcaError(f"task.ae_data = {o.ae_data}: no pictures ({', '.join(IMAGE_SUFFIXES)})")
        pictures = [image_to_rgba(f.read_bytes(), str(f), fit, padding) for f in files[: o.ae_count or None]]
    return centred(pictures, *image)


class LatentTask(LatentSpace, ImageTask):
    name = "latent"
    summary = "grow a high-resolution image in an autoencoder's latent space (latent NCAs)"
    perturbations = ("damage", "none", "mutation")
    capabilities = frozenset()  # the page has no decoder: it refuses, naming .gif / .mp4
    Options = Options
    first_stage = True  # trains its autoencoder before the NCA (open_session calls before_training)
    train_options = ("autoencoder",)  # nca train --autoencoder: reuse a trained one
    trains_with = ("mse",)  # it trains on the decoded picture's MSE alone

    def __init__(self, spec: ModelSpec, tensors: dict[str, torch.Tensor] | None = None, device: Any = "cpu") -> None:
        super().__init__(spec, tensors, device)
        self.options = Options(**spec.task.options.get("settings", {}))
        self.bind_autoencoder(spec)

    # -- training ------------------------------------------------------------------------------------------

    @staticmethod
    def check_config(config: Any) -> None:
        o = Options(**config.task_options)
        check_options(o, config.channels)
        if o.ae_data and o.autoencoder:
            raise UsageError("task.ae_data is what stage 1 learns, and --autoencoder skips stage 1: give one of them")
        if o.ae_data not in ("", "twemoji") and not Path(o.ae_data).expanduser().is_dir():
            raise UsageError(f"task.ae_data = {o.ae_data}: neither twemoji nor a folder of pictures")
        least, why = (1, " with task.ae_data = twemoji") if o.ae_data == "twemoji" else (0, "")
        if o.ae_count < least:
            raise UsageError(f"task.ae_count must be {least} or more{why}, not {o.ae_count}")
        if config.pool_size < config.batch and config.mode != "growing":
            raise UsageError(f"pool_size ({config.pool_size}) is smaller than batch ({config.batch})")

    @classmethod
    def from_config(cls, config: Any, device: Any) -> LatentTask:
        from ncacli.io.images import load_target, load_targets

        o, ae_config, reused = autoencoder_for(Options(**config.task_options), config.channels)
        if config.classes():
            target, _ = load_targets(config.classes(), config.size, config.padding)
        else:
            target, _ = load_target(config.target, config.emoji, config.size, config.padding)
        k = config.condition_channels
        h, w = int(target.shape[-2]), int(target.shape[-1])
        grid = latent_grid(h, w, ae_config.factor, "the target", config.size, config.padding)
        from ncacli.engine import seed_position_for

        default = [list(seed_position_for(target.mean(0) if k else target))]
        model = config.model_config()
        spec = ModelSpec(
            model,
            TaskSpec(
                name=cls.name,
                grid=grid,
                seed_kind="distill",
                seed_positions=[list(p) for p in config.seed_positions] or default,
                background=config.background,
                classes=class_names(config),
                channels=latent_channels(ae_config.latent, model.channels),
                options={
                    "mode": config.mode,
                    "settings": asdict(o),
                    "autoencoder": ae_config.to_dict(),
                    "image": [h, w],
                },
            ),
        )
        task = cls(spec, {"target": target}, device)
        task.config = config
        if reused is not None:
            task.use_autoencoder(reused)
        return task.to(device)

    @classmethod
    def from_resume(cls, config: Any, tensors: dict[str, torch.Tensor], device: Any) -> LatentTask:
        """The targets and the trained autoencoder the run used, from its resume file."""
        task = cls.from_config(replace(config, task_options={**config.task_options, "autoencoder": ""}), device)
        if "target" in tensors:
            task.target = tensors["target"].to(task.device)
            task.tensors["target"] = task.target
        task.restore_autoencoder(tensors)
        return task

    def before_training(self, run_dir: Path, quiet: bool) -> None:
        """Stage 1: the autoencoder, on the targets and ``ae_data``'s pictures (see
        :meth:`LatentSpace.train_autoencoder`)."""
        if self.autoencoder is not None:
            return
        targets = self.target if self.classes else self.target[None]
        more = data_set(self.options, self.config.padding, tuple(targets.shape[-2:]))
        pictures = targets if more is None else torch.cat([targets.cpu(), more])
        self.train_autoencoder(pictures, run_dir, quiet, self.config.seed)

    def describe(self) -> str:
        return super().describe() + " (latent)"

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        out["autoencoder"] = self.options.autoencoder or "trained in the run directory (stage 1)"
        return out

    def saved_tensors(self) -> dict[str, torch.Tensor]:
        return {k: t.cpu() for k, t in self.tensors.items()}

    def seeds(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.start(n, self.grid, generator)

    def start(self, n: int, grid: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        """Distill's seed: zeros (the empty picture), and channels from alpha on set to 1 at each seed cell."""
        from ncacli.engine import make_seed

        x = make_seed(n, self.spec.model.channels, *grid, self.seed_positions, self.device)
        return x.contiguous(memory_format=torch.channels_last)

    def prepare(self, config: Any, generator: torch.Generator) -> None:
        self.generator = generator  # draws the loss windows
        cells = F.avg_pool2d(self.target if self.classes else self.target[None], self.scale)
        self.guide_target = cells  # (K or 1, 4, h, w): each cell's share of the picture

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Per sample: the MSE of the decoded picture (premultiplied RGBA) to its target, and the state's own terms
        (:meth:`LatentSpace.state_terms`)."""
        mse = self.picture_mse(x, labels)
        self.last = {"mse": float(mse.detach().mean())}
        goal = self.guide_target[labels] if labels is not None else self.guide_target
        return mse + self.state_terms(x, goal)

    def picture_mse(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The decoded picture's MSE to its target, per sample. With ``loss_window``, while training, only a
        random window of it is decoded and compared (an unbiased estimate of the same loss): the window's latent
        cells and a margin wider than the decoder's reach are decoded and the margin cut off, so its pixels are
        the whole picture's."""
        target = self.target[labels] if labels is not None else self.target[None]
        f, side = self.scale, self.options.loss_window // self.scale
        h, w = x.shape[-2:]
        if not torch.is_grad_enabled() or side <= 0 or side >= min(h, w):
            return ((self.rgba(x) - target) ** 2).flatten(1).mean(1)
        g = self.generator
        top = int(torch.randint(h - side + 1, (1,), generator=g, device=g.device))
        left = int(torch.randint(w - side + 1, (1,), generator=g, device=g.device))
        m = WINDOW_MARGIN
        t0, l0 = max(0, top - m), max(0, left - m)
        t1, l1 = min(h, top + side + m), min(w, left + side + m)
        z = self.latents(x)[:, :, t0:t1, l0:l1]
        picture = self.autoencoder.decode(z, self.options.quantize)
        crop = picture[:, :, (top - t0) * f : (top - t0 + side) * f, (left - l0) * f : (left - l0 + side) * f]
        goal = target[:, :, top * f : (top + side) * f, left * f : (left + side) * f]
        return ((crop - goal) ** 2).flatten(1).mean(1)

    def terms(self) -> dict[str, float]:
        return dict(getattr(self, "last", {}))

    # -- showing -------------------------------------------------------------------------------------------

    def condition(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        return one_hot(labels, self.classes) if labels is not None else None
