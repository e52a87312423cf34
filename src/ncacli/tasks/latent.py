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
from ncacli.engine.autoencoder import Autoencoder, AutoencoderConfig
from ncacli.errors import UsageError
from ncacli.spec import ModelSpec, TaskSpec
from ncacli.tasks.image import ImageTask, class_names

DAMAGE_SPACES = ("pixel", "latent")
LATENT = 4  # the first latent channel: RGBA at the grid's resolution first, as in pixel space
STATE_RANGE = 3.0  # the overflow loss's bound on every channel (the codebook's vectors lie within about ±2.5)
WINDOW_MARGIN = 4  # latent cells around a loss window: more than the decoder reads (3 cells each way)
PREFIX = "task.autoencoder."


@dataclass(frozen=True)
class Options:
    autoencoder: str = ""  # a trained autoencoder to reuse (autoencoder.safetensors or a latent model file)
    kind: str = "vqvae"  # vqvae or ae (a plain autoencoder)
    latent: int = 8  # latent channels (the NCA's first channels); the rest of `channels` are hidden
    levels: int = 3  # 2**levels compression each way (3: 8×)
    width: int = 16  # the autoencoder's channels at full resolution
    codes: int = 256  # VQ-VAE codebook size
    ae_iters: int = 1500  # stage 1 iterations
    ae_batch: int = 4  # stage 1 batch
    ae_lr: float = 1e-3  # stage 1 learning rate (Adam)
    ae_crop: int = 128  # stage 1 learns from random windows this many pixels across (0: whole pictures)
    loss_window: int = 0  # stage 2's loss on a random window this many pixels across, decoded alone (0: all)
    damage_space: str = "pixel"  # where nca evaluate and nca render cut damage: pixel (re-encoded) or latent
    quantize: bool = False  # a VQ-VAE: snap the NCA's latents to the codebook before decoding (straight through)
    guide: float = 1.0  # weight of the state's RGBA channels' MSE to the target averaged over each cell (0: none)


def autoencoder_config(o: Options) -> AutoencoderConfig:
    return AutoencoderConfig(kind=o.kind, latent=o.latent, levels=o.levels, width=o.width, codes=o.codes)


class LatentTask(ImageTask):
    name = "latent"
    summary = "grow a high-resolution image in an autoencoder's latent space (latent NCAs)"
    perturbations = ("damage", "none", "mutation")
    capabilities = frozenset()  # the page has no decoder: it refuses, naming .gif / .mp4
    Options = Options
    first_stage = True  # trains its autoencoder before the NCA (open_session calls before_training)
    train_options = ("autoencoder",)  # nca train --autoencoder: reuse a trained one
    damage_spaces = DAMAGE_SPACES  # nca evaluate/render --damage-space
    trains_with = ("mse",)  # it trains on the decoded picture's MSE alone

    def __init__(self, spec: ModelSpec, tensors: dict[str, torch.Tensor] | None = None, device: Any = "cpu") -> None:
        super().__init__(spec, tensors, device)
        options = spec.task.options
        self.options = Options(**options.get("settings", {}))
        self.damage_space = self.options.damage_space
        self.ae_config = AutoencoderConfig.from_dict(options["autoencoder"])
        self.scale = self.ae_config.factor  # pixels per latent cell
        self.latent = self.ae_config.latent
        self.autoencoder: Autoencoder | None = None
        self._empty: dict = {}  # the empty picture's latent on grids other than the model's
        if any(k.startswith(PREFIX) for k in self.tensors):
            self.autoencoder = Autoencoder.from_tensors(self.ae_config, self.tensors, PREFIX).to(self.device)

    def moved(self) -> None:
        super().moved()
        if self.autoencoder is not None:
            self.autoencoder.to(self.device)

    # -- training ------------------------------------------------------------------------------------------

    @staticmethod
    def check_config(config: Any) -> None:
        o = Options(**config.task_options)
        if o.damage_space not in DAMAGE_SPACES:
            raise UsageError(f"task.damage_space must be pixel or latent, not {o.damage_space!r}")
        if o.kind not in ("vqvae", "ae"):
            raise UsageError(f"task.kind must be vqvae or ae, not {o.kind!r}")
        if not o.autoencoder and config.channels <= LATENT + o.latent:
            raise UsageError(
                f"channels ({config.channels}) must exceed 4 + task.latent ({LATENT + o.latent}): RGBA, "
                "latent, then hidden"
            )
        if config.pool_size < config.batch and config.mode != "growing":
            raise UsageError(f"pool_size ({config.pool_size}) is smaller than batch ({config.batch})")

    @classmethod
    def from_config(cls, config: Any, device: Any) -> LatentTask:
        from ncacli.io.images import load_target, load_targets
        from ncacli.tasks.autoencoder import read_autoencoder

        o = Options(**config.task_options)
        ae_config, reused = autoencoder_config(o), None
        if o.autoencoder:
            ae_config, reused = read_autoencoder(o.autoencoder)
            o = replace(o, kind=ae_config.kind, latent=ae_config.latent, levels=ae_config.levels,
                        width=ae_config.width, codes=ae_config.codes)  # fmt: skip
            if config.channels <= LATENT + ae_config.latent:
                raise UsageError(
                    f"{o.autoencoder}: its {ae_config.latent} latent channels and RGBA leave no hidden channel in "
                    f"channels = {config.channels}; raise channels"
                )
        if config.classes():
            target, _ = load_targets(config.classes(), config.size, config.padding)
        else:
            target, _ = load_target(config.target, config.emoji, config.size, config.padding)
        k = config.condition_channels
        h, w = int(target.shape[-2]), int(target.shape[-1])
        f = ae_config.factor
        if h % f or w % f:
            fit = [n - n % f for n in (h, w)]
            raise UsageError(
                f"the target is {w}×{h} pixels (--size {config.size}, padding {config.padding}), not a multiple of "
                f"the autoencoder's {f}× compression; use a size that makes {fit[1]}×{fit[0]} or {fit[1] + f}×"
                f"{fit[0] + f}"
            )
        from ncacli.engine import seed_position_for

        default = [list(seed_position_for(target.mean(0) if k else target))]
        model = config.model_config()
        spec = ModelSpec(
            model,
            TaskSpec(
                name=cls.name,
                grid=[h // f, w // f],
                seed_kind="distill",
                seed_positions=[list(p) for p in config.seed_positions] or default,
                background=config.background,
                classes=class_names(config),
                channels={
                    "rgb": [0, 1, 2],
                    "alpha": [3],
                    "latent": list(range(LATENT, LATENT + ae_config.latent)),
                    "hidden": list(range(LATENT + ae_config.latent, model.channels)),
                },
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
        ae = {k: v for k, v in tensors.items() if k.startswith(PREFIX)}
        if ae:
            task.use_autoencoder(Autoencoder.from_tensors(task.ae_config, ae, PREFIX))
        return task

    def before_training(self, run_dir: Path, quiet: bool) -> None:
        """Stage 1: train the autoencoder in ``run_dir`` (or take up its interrupted run there), unless one was
        given or restored."""
        if self.autoencoder is not None:
            return
        from ncacli.tasks.autoencoder import train_autoencoder

        o = self.options
        ae = train_autoencoder(
            self.target.cpu() if self.classes else self.target[None].cpu(), self.ae_config, run_dir,
            iters=o.ae_iters, batch=o.ae_batch, lr=o.ae_lr, seed=self.config.seed, device=self.device,
            seed_positions=self.seed_positions, quiet=quiet, crop=o.ae_crop,
        )  # fmt: skip
        self.use_autoencoder(ae)

    def use_autoencoder(self, ae: Autoencoder) -> None:
        """Freeze ``ae`` and keep it, with the latent of the empty image (what seeds and erased cells hold)."""
        self.autoencoder = ae.to(self.device).eval().requires_grad_(False)
        h, w = self.spec.task.options["image"]
        with torch.no_grad():
            empty = self.autoencoder.encode(torch.zeros(1, 4, h, w, device=self.device))[0]
        self.tensors.update(self.autoencoder.tensors(PREFIX))
        self.tensors["task.empty"] = empty.cpu()
        self.tensors = {k: v.to(self.device) for k, v in self.tensors.items()}

    @classmethod
    def check_tensors(cls, spec: ModelSpec, tensors: dict[str, torch.Tensor]) -> str | None:
        why = ImageTask.check_tensors(spec, tensors)
        if why:
            return why
        try:
            config = AutoencoderConfig.from_dict(spec.task.options.get("autoencoder", {}))
            Autoencoder.from_tensors(config, tensors, PREFIX)
        except (ValueError, TypeError) as exc:
            return f"its autoencoder does not load ({exc})"
        empty = tensors.get("task.empty")
        if empty is None or tuple(empty.shape) != (config.latent, *spec.task.grid):
            return "its empty-image latent (task.empty) is missing or not the latent grid's shape"
        return None

    def describe(self) -> str:
        return super().describe() + " (latent)"

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        out["autoencoder"] = self.options.autoencoder or "trained in the run directory (stage 1)"
        return out

    def saved_tensors(self) -> dict[str, torch.Tensor]:
        return {k: t.cpu() for k, t in self.tensors.items()}

    def empty(self, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """The latent grid of the empty picture ``(L, h, w)`` (the model's grid: saved; another: encoded)."""
        if grid is None or tuple(grid) == tuple(self.grid):
            return self.tensors["task.empty"].to(self.device)
        key = (tuple(grid), str(self.device))
        if key not in self._empty:
            h, w = grid
            with torch.no_grad():
                picture = torch.zeros(1, 4, h * self.scale, w * self.scale, device=self.device)
                self._empty[key] = self.autoencoder.encode(picture)[0]
        return self._empty[key]

    def latents(self, states: torch.Tensor) -> torch.Tensor:
        """What the decoder reads: the latent channels are offsets from the empty picture's latent, so an empty
        (zero) cell is empty picture."""
        return states[:, LATENT : LATENT + self.latent] + self.empty(tuple(states.shape[-2:]))[None]

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
        """Per sample: the MSE of the decoded picture (premultiplied RGBA) to its target; ``guide`` × the MSE of the
        state's RGBA channels to the target averaged over each cell's pixels (the picture at the grid's
        resolution, which alive masking reads, as in pixel space); ``overflow_weight`` × the mean of how far each
        channel lies outside ±``STATE_RANGE`` (a latent state has nothing else to bound it)."""
        mse = self.picture_mse(x, labels)
        total, self.last = mse, {"mse": float(mse.detach().mean())}
        if self.options.guide > 0:
            goal = self.guide_target[labels] if labels is not None else self.guide_target
            guide = ((x[:, :4] - goal) ** 2).flatten(1).mean(1)
            total = total + self.options.guide * guide
            self.last["guide"] = float(guide.detach().mean())
        weight = self.config.overflow_weight if self.config is not None else 0.0
        if weight > 0:
            overflow = F.relu(x.abs() - STATE_RANGE).mean(dim=(1, 2, 3))
            total = total + weight * overflow
            self.last["overflow"] = float(overflow.detach().mean())
        return total

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

    def erase(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cut ``mask`` out of ``states``. ``mask`` ``(B or 1, 1, H, W)`` is in pixels (``H = grid · scale``), or in
        latent cells. Every cell it touches is zeroed (the empty picture), except in pixel space
        (``damage_space = "pixel"``, a pixel mask): there the picture is decoded, cut and encoded again, and the
        touched cells' latents are what the cut picture encodes to."""
        from ncacli.engine import apply_damage

        f = self.scale
        pixel_mask = mask.shape[-1] == states.shape[-1] * f
        cells = F.max_pool2d(mask.float(), f) > 0 if pixel_mask else mask.bool()
        out = apply_damage(states, cells)
        if pixel_mask and self.damage_space == "pixel":
            with torch.no_grad():
                picture = self.autoencoder.decode(self.latents(states), self.options.quantize)
                again = self.autoencoder.encode(picture * ~mask) - self.empty(tuple(states.shape[-2:]))[None]
            z = slice(LATENT, LATENT + self.latent)
            out[:, z] = torch.where(cells, again, states[:, z])
        return out

    # -- showing -------------------------------------------------------------------------------------------

    def rgba(self, states: torch.Tensor) -> torch.Tensor:
        """The decoded picture: premultiplied RGBA ``(B, 4, grid·8, grid·8)``."""
        return self.autoencoder.decode(self.latents(states), self.options.quantize)

    def condition(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        return one_hot(labels, self.classes) if labels is not None else None
