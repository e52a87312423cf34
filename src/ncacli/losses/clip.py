"""Text-guided objectives: CLIP similarity to a prompt, and the growth loss that goes with it.

The recipe of "Growing Images from Text with NCA": the visible RGB of each state is cut into
``augmentations`` random views (random resized crop, small rotation, colour jitter), each
view goes through CLIP's image tower, and the loss is one minus the mean cosine similarity to the
prompt's text embedding. The growth loss asks for alive cells, in proportion to how well the
picture already matches the prompt, so that the grid is not flooded with alive but blank cells.
Which CLIP and which weights: :mod:`ncacli.losses.clip_model`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ncacli.engine.visible import visible_rgb
from ncacli.errors import UsageError
from ncacli.losses.clip_model import load_clip
from ncacli.names import CLIP_AUGMENTS, GROWTH_LOSSES
from ncacli.options import option

# crop augmentation: area fraction, aspect ratio, rotation, colour jitter
CROP_SCALE = (0.5, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
ROTATION_DEGREES = 15.0
JITTER = 0.1


def random_views(images: torch.Tensor, count: int, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """``(B, 3, H, W)`` in [0, 1] → ``(B·count, 3, *size)``: random resized crops, rotated and colour-jittered.

    Views of picture ``b`` are rows ``b·count … b·count + count − 1``. Differentiable with respect to
    ``images``; every random number comes from ``generator``.
    """
    batch, _, height, width = images.shape
    n = batch * count
    device, dtype = images.device, images.dtype

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator, device=generator.device).to(device, dtype)

    aspect = width / height
    area = uniform(*CROP_SCALE)  # fraction of the picture
    ratio = torch.exp(uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))  # crop width / height in pixels
    # half extents of the crop in normalised coordinates (1 = the whole side)
    half_w = torch.sqrt(area * ratio / aspect).clamp(max=1.0)
    half_h = torch.sqrt(area * aspect / ratio).clamp(max=1.0)
    centre_x = (2 * uniform(0.0, 1.0) - 1) * (1 - half_w)
    centre_y = (2 * uniform(0.0, 1.0) - 1) * (1 - half_h)
    angle = uniform(-ROTATION_DEGREES, ROTATION_DEGREES) * (math.pi / 180)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # output (u, v) → input: scale to the crop, rotate in pixel space (aspect = W/H), shift to the centre
    theta = torch.stack(
        [
            torch.stack([cos * half_w, -sin * half_h / aspect, centre_x], dim=1),
            torch.stack([sin * half_w * aspect, cos * half_h, centre_y], dim=1),
        ],
        dim=1,
    )  # (n, 2, 3)
    grid = F.affine_grid(theta, [n, 3, size[0], size[1]], align_corners=False)
    views = F.grid_sample(
        images.repeat_interleave(count, dim=0), grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    brightness = uniform(1 - JITTER, 1 + JITTER).view(n, 1, 1, 1)
    contrast = uniform(1 - JITTER, 1 + JITTER).view(n, 1, 1, 1)
    saturation = uniform(1 - JITTER, 1 + JITTER).view(n, 1, 1, 1)
    views = views * brightness
    grey = _luma(views)  # (n, 1, h, w)
    mean = grey.mean(dim=(2, 3), keepdim=True)
    views = (views - mean) * contrast + mean
    grey = _luma(views)
    views = (views - grey) * saturation + grey
    return views.clamp(0.0, 1.0)


def _luma(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` → ``(B, 1, H, W)`` (ITU-R 601 weights)."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


@dataclass(frozen=True)
class ClipOptions:
    """The ``[objectives.clip]`` section."""

    prompt: str = option(flag="--prompt")  # the text the picture grows towards
    model: str = option("ViT-B-32", "--clip-model")  # an open_clip name, "local-dir:PATH", or a model config JSON
    pretrained: str = option("openai", "--clip-pretrained")  # an open_clip tag, a weights file, or a folder
    augmentations: int = 8  # random views of each sample scored per step (1 with augment = "resize")
    augment: str = "crop"  # crop (random resized crop, rotation, colour jitter) or resize
    growth_loss: str = "proportional"  # the growth loss that comes along: proportional, constant, gated, none
    growth_weight: float = 1.0  # its weight (0 = none)
    growth_floor: float = 0.5  # the alive fraction the constant growth loss asks for

    def __post_init__(self) -> None:
        if not self.prompt:
            raise UsageError("the clip objective needs a prompt: --prompt TEXT (objectives.clip.prompt)")
        if self.augment not in CLIP_AUGMENTS:
            raise UsageError(f"objectives.clip.augment must be one of {', '.join(CLIP_AUGMENTS)}, not {self.augment!r}")
        if self.augmentations < 1:
            raise UsageError(f"objectives.clip.augmentations must be at least 1, not {self.augmentations}")
        if self.growth_loss not in GROWTH_LOSSES:
            raise UsageError(
                f"objectives.clip.growth_loss must be one of {', '.join(GROWTH_LOSSES)}, not {self.growth_loss!r}"
            )


class ClipLoss:
    """One minus the mean cosine similarity of CLIP views of each state to the prompt: ``(B, C, H, W)`` → ``(B,)``.

    CLIP is loaded when the loss is made, so that missing weights are reported before training.
    After each call ``similarity`` holds the mean similarity per sample ``(B,)`` (detached) and
    ``last`` holds ``{"clip_score": −mean similarity}``, the number the paper reports. Random views
    come from ``generator`` (set by the trainer); when it is None a private generator seeded with
    ``config.seed`` is used.
    """

    Options = ClipOptions
    # the top-level keys of earlier versions that are now options of this objective
    moved_keys = {
        "prompt": "prompt",
        "clip_model": "model",
        "clip_pretrained": "pretrained",
        "clip_augmentations": "augmentations",
        "clip_augment": "augment",
        "growth_loss": "growth_loss",
        "growth_weight": "growth_weight",
        "growth_floor": "growth_floor",
    }
    needs_target = False

    @staticmethod
    def describe(o: ClipOptions) -> str:
        """What it grows towards, in a title or a run directory's name."""
        return f"prompt {o.prompt!r}"

    @staticmethod
    def provenance(o: ClipOptions) -> dict[str, Any]:
        """What a model file's history keeps of it."""
        return {
            "prompt": o.prompt,
            "clip_model": o.model,
            "clip_pretrained": o.pretrained,
            "growth_loss": o.growth_loss,
        }

    def __init__(self, target: torch.Tensor | None, config: Any, **options: Any) -> None:
        self.config = config
        self.options = o = ClipOptions(**options)
        self.clip = load_clip(o.model, o.pretrained)
        self.text_cpu = self.clip.encode_text(o.prompt)  # (D,)
        self.views = 1 if o.augment == "resize" else int(o.augmentations)
        self.generator: torch.Generator | None = None
        self.last: dict[str, float] = {}
        self.similarity: torch.Tensor | None = None
        self._text: torch.Tensor = self.text_cpu
        self._own: torch.Generator | None = None

    @staticmethod
    def extra_terms(config: Any, clip: ClipLoss) -> list:
        """The growth loss that goes with it (``growth_loss``, ``growth_weight``)."""
        o = clip.options
        if o.growth_loss == "none" or o.growth_weight <= 0:
            return []
        return [("growth", o.growth_weight, GrowthLoss(clip, config.background))]

    def text(self, device: torch.device) -> torch.Tensor:
        """The prompt's embedding ``(D,)`` on ``device``."""
        if self._text.device != device:
            self._text = self.text_cpu.to(device)
        return self._text

    def _generator(self, device: torch.device) -> torch.Generator:
        if self.generator is not None:
            return self.generator
        if self._own is None or self._own.device != device:
            self._own = torch.Generator(device=device).manual_seed(int(self.config.seed))
        return self._own

    def resized(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` → ``(B, 3, *image_size)`` by bilinear resizing."""
        return F.interpolate(images, size=self.clip.image_size, mode="bilinear", align_corners=False)

    def similarities(self, images: torch.Tensor) -> torch.Tensor:
        """Pictures ``(B, 3, H, W)`` in [0, 1] → cosine similarity of each view to the prompt ``(B, N)``."""
        batch = images.shape[0]
        if self.options.augment == "resize":
            views = self.resized(images)
        else:
            views = random_views(images, self.views, self.clip.image_size, self._generator(images.device))
        embeddings = self.clip.encode_image(views)  # (B·N, D)
        return (embeddings @ self.text(images.device)).view(batch, -1)

    def __call__(self, state: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B,)``, differentiable with respect to the state."""
        sim = self.similarities(visible_rgb(state, self.config.background))  # (B, N)
        mean = sim.mean(dim=1)
        self.similarity = mean.detach()
        self.last = {"clip_score": -float(sim.detach().mean())}
        return 1.0 - mean

    @torch.no_grad()
    def score(self, state: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each state's resized picture to the prompt ``(B,)``; deterministic, no gradient."""
        images = visible_rgb(state, self.config.background)
        return (self.clip.encode_image(self.resized(images)) @ self.text(state.device)).float()


class GrowthLoss:
    """A pull towards alive cells, to be called right after the :class:`ClipLoss` on the same batch.

    ``alive`` is the mean of ``state[:, 3].clamp(0, 1)`` per sample. ``growth_loss`` says how:
    ``proportional`` — ``max(similarity, 0) · (1 − alive)``, alive cells earn in proportion to how
    well CLIP likes the picture; ``constant`` — ``relu(growth_floor − alive)``; ``gated`` —
    ``(1 − alive)`` when the similarity beats that of a blank picture, else 0; ``none`` — zero.
    ``(B, C, H, W)`` → ``(B,)``, unweighted. ``last`` holds ``{"alive": mean alive fraction}``.
    """

    needs_target = False

    def __init__(self, clip: ClipLoss, background: str) -> None:
        self.clip = clip
        self.kind = clip.options.growth_loss
        self.floor = float(clip.options.growth_floor)
        self.last: dict[str, float] = {}
        self.baseline: float | None = None
        if self.kind == "gated":
            self.baseline = self.blank_similarity(background)

    @torch.no_grad()
    def blank_similarity(self, background: str) -> float:
        """CLIP's cosine similarity of a picture of nothing but the background colour to the prompt."""
        colour = 1.0 if background == "white" else 0.0
        blank = torch.full((1, 3, *self.clip.clip.image_size), colour)
        return float(self.clip.clip.encode_image(blank)[0] @ self.clip.text_cpu)

    def __call__(self, state: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B,)``."""
        alive = state[:, 3].clamp(0.0, 1.0).mean(dim=(1, 2))  # (B,)
        self.last = {"alive": float(alive.detach().mean())}
        if self.kind == "none":
            return torch.zeros_like(alive)
        if self.kind == "constant":
            return F.relu(self.floor - alive)
        similarity = self.clip.similarity
        if similarity is None or similarity.shape[0] != state.shape[0]:
            got = "no batch" if similarity is None else f"a batch of {similarity.shape[0]}"
            raise RuntimeError(
                f"GrowthLoss on a batch of {state.shape[0]} states, but the CLIP loss last saw {got}; "
                "call the CLIP loss on the same batch first"
            )
        similarity = similarity.to(alive.device, alive.dtype)
        if self.kind == "proportional":
            return similarity.clamp_min(0.0) * (1.0 - alive)
        assert self.baseline is not None
        return (similarity > self.baseline).to(alive.dtype) * (1.0 - alive)
