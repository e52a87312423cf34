"""A state in an autoencoder's latent grid: what every latent task shares (the NCAtorch review §3.1.4).

The state's channels are RGBA at the grid's resolution first (what alive masking reads), then ``latent`` channels
the decoder reads, as offsets from the latent of the empty picture (so an empty cell is empty picture), then hidden
channels. The model file carries the autoencoder (``task.autoencoder.*``) and the empty picture's latent
(``task.empty``) beside the NCA, so every verb decodes from that one file. A task mixes :class:`LatentSpace` in
before its base and calls :meth:`bind_autoencoder` from ``__init__``; its ``Options`` carry ``quantize`` and
``damage_space``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ncacli.engine.autoencoder import Autoencoder, AutoencoderConfig
from ncacli.errors import UsageError

DAMAGE_SPACES = ("pixel", "latent")
LATENT = 4  # the first latent channel: RGBA at the grid's resolution first, as in pixel space
PREFIX = "task.autoencoder."
STATE_RANGE = 3.0  # the overflow loss's bound on every channel (the codebook's vectors lie within about ±2.5)


@dataclass(frozen=True)
class AutoencoderOptions:
    """The ``[task]`` options every latent task takes."""

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
    ae_perturb: bool = True  # stage 1 learns damaged, partly grown and empty copies too (false: the pictures alone)
    damage_space: str = "pixel"  # where nca evaluate and nca render cut damage: pixel (re-encoded) or latent
    quantize: bool = False  # a VQ-VAE: snap the NCA's latents to the codebook before decoding (straight through)
    guide: float = 1.0  # weight of the state's RGBA channels' MSE to the target averaged over each cell (0: none)


def check_options(o: AutoencoderOptions, channels: int) -> None:
    """Refuse latent options no run can train with (``channels``: the NCA's)."""
    if o.damage_space not in DAMAGE_SPACES:
        raise UsageError(f"task.damage_space must be pixel or latent, not {o.damage_space!r}")
    if o.kind not in ("vqvae", "ae"):
        raise UsageError(f"task.kind must be vqvae or ae, not {o.kind!r}")
    if not o.autoencoder and channels <= LATENT + o.latent:
        raise UsageError(
            f"channels ({channels}) must exceed 4 + task.latent ({LATENT + o.latent}): RGBA, latent, then hidden"
        )


def autoencoder_for(o: AutoencoderOptions, channels: int) -> tuple[Any, AutoencoderConfig, Autoencoder | None]:
    """The autoencoder a run's options name: ``(options, its settings, the trained one to reuse or None)``; a
    reused one's settings replace the options'."""
    from ncacli.tasks.autoencoder import read_autoencoder

    if not o.autoencoder:
        return o, AutoencoderConfig(kind=o.kind, latent=o.latent, levels=o.levels, width=o.width, codes=o.codes), None
    ae_config, reused = read_autoencoder(o.autoencoder)
    o = replace(o, kind=ae_config.kind, latent=ae_config.latent, levels=ae_config.levels,
                width=ae_config.width, codes=ae_config.codes)  # fmt: skip
    if channels <= LATENT + ae_config.latent:
        raise UsageError(
            f"{o.autoencoder}: its {ae_config.latent} latent channels and RGBA leave no hidden channel in "
            f"channels = {channels}; raise channels"
        )
    return o, ae_config, reused


def latent_grid(h: int, w: int, factor: int, what: str, size: int, padding: int) -> list[int]:
    """The latent grid of an ``h × w`` picture, refused unless the autoencoder's ``factor`` divides it."""
    if h % factor or w % factor:
        fit = [n - n % factor for n in (h, w)]
        raise UsageError(
            f"{what} is {w}×{h} pixels (--size {size}, padding {padding}), not a multiple of the autoencoder's "
            f"{factor}× compression; use a size that makes {fit[1]}×{fit[0]} or {fit[1] + factor}×{fit[0] + factor}"
        )
    return [h // factor, w // factor]


def latent_channels(latent: int, channels: int) -> dict[str, list[int]]:
    """The state's channels: RGBA at the grid's resolution, the latent, then hidden."""
    return {"rgb": [0, 1, 2], "alpha": [3], "latent": list(range(LATENT, LATENT + latent)),
            "hidden": list(range(LATENT + latent, channels))}  # fmt: skip


class LatentSpace:
    """The autoencoder of a latent task, and how its states decode, are cut and are seeded."""

    autoencoder: Autoencoder | None
    options: Any
    damage_spaces = DAMAGE_SPACES  # nca evaluate/render --damage-space

    def bind_autoencoder(self, spec: Any) -> None:
        """Read the autoencoder's settings from the spec, and the trained one from the model file's tensors."""
        self.ae_config = AutoencoderConfig.from_dict(spec.task.options["autoencoder"])
        self.scale = self.ae_config.factor  # pixels per latent cell
        self.latent = self.ae_config.latent
        self.damage_space = self.options.damage_space
        self.autoencoder = None
        self._empty: dict = {}  # the empty picture's latent on grids other than the model's
        if any(k.startswith(PREFIX) for k in self.tensors):
            self.autoencoder = Autoencoder.from_tensors(self.ae_config, self.tensors, PREFIX).to(self.device)

    def moved(self) -> None:
        super().moved()
        if self.autoencoder is not None:
            self.autoencoder.to(self.device)

    @classmethod
    def from_resume(cls, config: Any, tensors: dict[str, torch.Tensor], device: Any) -> Any:
        """The task of a run being resumed, with the autoencoder its resume file keeps (none: stage 1 is to come)."""
        task = cls.from_config(replace(config, task_options={**config.task_options, "autoencoder": ""}), device)
        task.restore_autoencoder(tensors)
        return task

    def restore_autoencoder(self, tensors: dict[str, torch.Tensor]) -> None:
        ae = {k: v for k, v in tensors.items() if k.startswith(PREFIX)}
        if ae:
            self.use_autoencoder(Autoencoder.from_tensors(self.ae_config, ae, PREFIX))

    def train_autoencoder(self, pictures: torch.Tensor, run_dir: Path, quiet: bool, seed: int) -> None:
        """Stage 1: train the autoencoder on ``pictures`` ``(N, 4, H, W)`` in ``run_dir`` (or take up its interrupted
        run there), unless one was given or restored."""
        if self.autoencoder is not None:
            return
        from ncacli.tasks.autoencoder import train_autoencoder

        o = self.options
        ae = train_autoencoder(
            pictures.cpu(), self.ae_config, run_dir, iters=o.ae_iters, batch=o.ae_batch, lr=o.ae_lr, seed=seed,
            device=self.device, seed_positions=self.spec.task.seed_positions, quiet=quiet, crop=o.ae_crop,
            perturb=o.ae_perturb,
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
    def check_tensors(cls, spec: Any, tensors: dict[str, torch.Tensor]) -> str | None:
        """What the task it is mixed into checks, then the autoencoder (:meth:`check_autoencoder`)."""
        return super().check_tensors(spec, tensors) or LatentSpace.check_autoencoder(spec, tensors)

    @staticmethod
    def check_autoencoder(spec: Any, tensors: dict[str, torch.Tensor]) -> str | None:
        """Why a model file's autoencoder or empty latent does not load, or None."""
        try:
            config = AutoencoderConfig.from_dict(spec.task.options.get("autoencoder", {}))
            Autoencoder.from_tensors(config, tensors, PREFIX)
        except (ValueError, TypeError) as exc:
            return f"its autoencoder does not load ({exc})"
        empty = tensors.get("task.empty")
        if empty is None or tuple(empty.shape) != (config.latent, *spec.task.grid):
            return "its empty-image latent (task.empty) is missing or not the latent grid's shape"
        return None

    def state_terms(self, x: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """The terms on the state itself, per sample, recorded in ``last``: ``guide`` × the MSE of its RGBA channels
        to ``goal``, the target averaged over each cell's pixels (the picture at the grid's resolution, which
        alive masking reads, as in pixel space); ``overflow_weight`` × the mean of how far each channel lies
        outside ±``STATE_RANGE`` (a latent state has nothing else to bound it)."""
        total = torch.zeros(x.shape[0], device=x.device)
        if self.options.guide > 0:
            guide = ((x[:, :4] - goal) ** 2).flatten(1).mean(1)
            total = total + self.options.guide * guide
            self.last["guide"] = float(guide.detach().mean())
        weight = self.config.overflow_weight if self.config is not None else 0.0
        if weight > 0:
            overflow = F.relu(x.abs() - STATE_RANGE).mean(dim=(1, 2, 3))
            total = total + weight * overflow
            self.last["overflow"] = float(overflow.detach().mean())
        return total

    def empty(self, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """The latent grid of the empty picture ``(L, h, w)`` (the model's grid: saved; another: encoded)."""
        if grid is None or tuple(grid) == tuple(self.spec.task.grid):
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

    def rgba(self, states: torch.Tensor) -> torch.Tensor:
        """The decoded picture: premultiplied RGBA ``(B, 4, grid·scale, grid·scale)``."""
        return self.autoencoder.decode(self.latents(states), self.options.quantize)

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
