"""Texture objective: match VGG16 feature statistics of a style image (Self-Organising Textures).

The state's visible RGB goes through VGG16 up to relu5_1; at relu1_1, relu2_1, relu3_1, relu4_1 and
relu5_1 its features are compared with the style image's, either by sliced optimal transport
(``sot``, the default: random projections of the features, sorted, compared as 1-D distributions)
or by Gram matrices (``gram``). Both ignore where things are, so the NCA learns a texture.

VGG16 weights come from torchvision's cache (``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``),
downloaded there on first use as torchvision does, or from a local torchvision state dict, whole or
``features.*`` only (``--vgg-weights FILE``, or ``NCA_VGG16_WEIGHTS`` for every run); ``"random"`` builds a
seeded, randomly initialised VGG16 (for tests).
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ncacli.errors import NcaError, UsageError, check_random_weights
from ncacli.io.weights import WeightsFileError, first_line, load_features, read_features, source_of, weights_file
from ncacli.names import STYLE_LOSSES
from ncacli.options import option

# features indices of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in torchvision's VGG16
STYLE_LAYERS = (1, 6, 11, 18, 25)
# where a model file keeps the style image it learned: RGB (3, h, w) in [0, 1], as the loss saw it
STYLE_IMAGE = "task.style"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# VGG16 halves the picture 4 times before relu5_1: smaller pictures are scaled up (nearest) to this side
MIN_SIDE = 16
# seconds a stalled download may wait on the network before it counts as offline
DOWNLOAD_TIMEOUT = 15.0

_VGG_CACHE: dict[tuple, VGGFeatures] = {}


class VGGFeatures(nn.Module):
    """VGG16 ``features`` up to relu5_1: RGB ``(B, 3, H, W)`` in [0, 1] → the 5 style activations.

    The output is a list of ``(B, C_l, H_l, W_l)`` tensors, C_l = 64, 128, 256, 512, 512 and
    H_l = H / 1, 2, 4, 8, 16 (rounded down). ImageNet normalisation happens inside.
    """

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.features = nn.Sequential(*list(features.children())[: STYLE_LAYERS[-1] + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        x = (rgb - self.mean) / self.std
        out = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in STYLE_LAYERS:
                out.append(x)
        return out


def vgg_weights_entry():
    """torchvision's weights entry for VGG16 (its URL names the cached file)."""
    from torchvision.models import VGG16_Weights

    return VGG16_Weights.IMAGENET1K_V1


def vgg_cache_path() -> Path:
    """Where torchvision keeps the VGG16 weights: ``torch.hub.get_dir()/checkpoints/vgg16-397923af.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(vgg_weights_entry().url).name


def _missing_message(reason: str) -> str:
    url = vgg_weights_entry().url
    return (
        f"the style loss needs the torchvision VGG16 weights {Path(url).name}: not in {vgg_cache_path().parent} "
        f"and not downloadable here ({reason}). Put the file from {url} there, or name a local copy with "
        f"--vgg-weights FILE or $NCA_VGG16_WEIGHTS"
    )


def _vgg16_features() -> nn.Sequential:
    """torchvision's VGG16 ``features`` (configuration D), without building the 120M-parameter classifier."""
    from torchvision.models.vgg import cfgs, make_layers

    return make_layers(cfgs["D"], batch_norm=False)


def _download_state_dict() -> dict:
    """The VGG16 state dict through torch.hub's cache, downloading it there when missing."""
    entry = vgg_weights_entry()
    quiet = io.StringIO()
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT if previous is None else previous)
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            return torch.hub.load_state_dict_from_url(entry.url, progress=False, check_hash=True, weights_only=True)
    finally:
        socket.setdefaulttimeout(previous)


def _pretrained_features() -> nn.Sequential:
    features = _vgg16_features()
    cached = vgg_cache_path()
    was_cached = cached.is_file()
    try:
        state = _download_state_dict()
    except Exception as exc:  # URLError/timeouts are OSErrors; a bad download fails its hash check
        if was_cached:
            raise NcaError(
                f"{cached}: corrupt VGG16 weights ({first_line(exc)}); delete it to download it again, "
                f"or pass a good copy with --vgg-weights FILE"
            ) from None
        raise NcaError(_missing_message(first_line(exc))) from None
    try:
        load_features(features, state)
    except Exception as exc:
        raise NcaError(
            f"{cached}: not torchvision VGG16 weights ({first_line(exc)}); delete it to download it again, "
            f"or pass a good copy with --vgg-weights FILE"
        ) from None
    return features


def _file_features(path: str) -> nn.Sequential:
    features = _vgg16_features()
    try:
        read_features(path, "vgg16", features, "--vgg-weights")
    except WeightsFileError as exc:
        raise NcaError(str(exc)) from None
    return features


def _random_features() -> nn.Sequential:
    """A seeded random VGG16 ``features``, initialised as torchvision initialises VGG convolutions."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # a "random" VGG is the same one every time
        features = _vgg16_features()
        for module in features.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
    return features


def _cache_key(weights: str) -> tuple:
    if weights in ("", "random"):
        return (weights,)
    path = Path(weights)
    try:
        stat = path.stat()
    except OSError:
        return (weights,)
    return (str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def build_vgg(weights: str = "") -> VGGFeatures:
    """The frozen VGG16 feature extractor on the CPU (cached per ``weights`` in this process).

    ``weights``: ``""`` (the file ``$NCA_VGG16_WEIGHTS`` names, else torchvision's IMAGENET1K_V1 weights through
    its cache), a file holding a
    torchvision VGG16 state dict (full model or ``features.*`` keys), or ``"random"`` (tests only).
    """
    weights = weights_file("vgg16", weights) or ""
    if weights == "random":
        check_random_weights("--vgg-weights", "VGG16")
    key = _cache_key(weights)
    if key not in _VGG_CACHE:
        if weights == "":
            features = _pretrained_features()
        elif weights == "random":
            features = _random_features()
        else:
            features = _file_features(weights)
        _VGG_CACHE[key] = VGGFeatures(features).eval().requires_grad_(False)
    return _VGG_CACHE[key]


def load_style_image(path: str, size: int) -> torch.Tensor:
    """The style picture fitted into ``size`` pixels, over white → ``(1, 3, h, w)`` in [0, 1]."""
    from ncacli.engine.visible import visible_rgb
    from ncacli.io.images import image_to_rgba, read_image_file

    return visible_rgb(image_to_rgba(read_image_file(path), path, size=size)[None], "white")


def _big_enough(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` scaled up (nearest, by a whole factor) when a side is below ``MIN_SIDE``."""
    side = min(rgb.shape[-2:])
    if side < MIN_SIDE:
        rgb = F.interpolate(rgb, scale_factor=math.ceil(MIN_SIDE / side), mode="nearest")
    return rgb


def _flatten(features: list[torch.Tensor]) -> list[torch.Tensor]:
    """``(B, C, h, w)`` per layer → ``(B, C, h·w)``."""
    return [f.flatten(2) for f in features]


def gram(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, N)`` → Gram matrices ``(B, C, C)`` = F Fᵀ / N."""
    return features @ features.transpose(1, 2) / features.shape[-1]


def unit_directions(
    count: int, channels: int, generator: torch.Generator | None, device: Any = None, dtype: Any = None
) -> torch.Tensor:
    """``count`` random unit vectors in a ``channels``-dimensional feature space → ``(count, channels)``."""
    directions = torch.randn(count, channels, generator=generator, device=device, dtype=dtype)
    return directions / directions.norm(dim=1, keepdim=True)


def sliced_ot_along(features: torch.Tensor, style: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Sliced optimal transport distance along given ``directions`` ``(P, C)``: ``(B, C, N)`` against
    ``(1, C, M)`` → ``(B,)`` (see :func:`sliced_ot`)."""
    n = features.shape[2]
    ours = torch.sort(directions @ features, dim=-1).values  # (B, P, N)
    theirs = torch.sort(directions @ style, dim=-1).values  # (1, P, M)
    if theirs.shape[-1] != n:
        theirs = F.interpolate(theirs, size=n, mode="linear", align_corners=False)
    return ((ours - theirs) ** 2).mean(dim=(1, 2))


def sliced_ot(
    features: torch.Tensor, style: torch.Tensor, projections: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Sliced optimal transport distance per sample: ``(B, C, N)`` against ``(1, C, M)`` → ``(B,)``.

    ``projections`` random unit vectors in feature space; both feature sets are projected onto
    them and sorted along positions; the sorted style values are resampled to ``N`` positions
    (linear interpolation of the quantile function) when ``M ≠ N``; the loss is the mean squared
    difference.
    """
    directions = unit_directions(projections, features.shape[1], generator, features.device, features.dtype)
    return sliced_ot_along(features, style, directions)


# per layer: (layer index, its features (B, C, N), the style's (1, C, M)) → the sliced-OT term (B,)
SlicedTerm = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


class StyleReference:
    """A style image's VGG16 statistics and the relative style distance of pictures to them.

    ``image`` is RGB ``(1, 3, h, w)`` in [0, 1]. Each layer's term is divided by the style's own mean
    square at that layer (activations for sot, Gram entries for gram), so the distance is about 0 for
    the style itself and a few units per layer for a flat picture whatever the backbone's weights. The
    network and the statistics move to a picture's device (once per device).
    """

    def __init__(self, vgg: VGGFeatures, image: torch.Tensor, kind: str) -> None:
        self.vgg, self.image, self.kind = vgg, image, kind
        self._device: torch.device | None = None
        self._net: VGGFeatures = vgg
        self._style: list[torch.Tensor] = []  # per layer: (1, C, M) for sot, (1, C, C) Gram for gram
        self._scale: list[float] = []  # per layer: the style's own mean square (activations, or Gram entries)

    def prepare(self, device: torch.device) -> None:
        """Move the network to ``device`` and compute the style statistics there (once per device)."""
        if self._device == device:
            return
        self._net = self.vgg if device.type == "cpu" else copy.deepcopy(self.vgg).to(device)
        with torch.no_grad():
            feats = _flatten(self._net(_big_enough(self.image.to(device))))
        self._style = [gram(f) for f in feats] if self.kind == "gram" else feats
        self._scale = [max(float((f**2).mean()), 1e-12) for f in self._style]
        self._device = device

    def distance(self, rgb: torch.Tensor, sliced: SlicedTerm) -> torch.Tensor:
        """RGB ``(B, 3, H, W)`` in [0, 1] → the relative distance ``(B,)``, differentiable; ``sliced`` gives
        each layer's sliced-OT term (its projections are the caller's)."""
        self.prepare(rgb.device)
        feats = _flatten(self._net(_big_enough(rgb)))
        total = torch.zeros(rgb.shape[0], device=rgb.device, dtype=rgb.dtype)
        for layer, (ours, theirs, scale) in enumerate(zip(feats, self._style, self._scale, strict=True)):
            if self.kind == "gram":
                term = ((gram(ours) - theirs) ** 2).mean(dim=(1, 2))
            else:
                term = sliced(layer, ours, theirs)
            total = total + term / scale
        return total


@dataclass(frozen=True)
class StyleOptions:
    """The ``[objectives.style]`` section."""

    image: str = option(flag="--style")  # the style image (a file, or skimage:NAME)
    loss: str = option("sot", "--style-loss")  # sot (sliced optimal transport) or gram
    size: int = 128  # the style image is fitted into this many pixels
    projections: int = 0  # sliced-OT projections per layer; 0 = as many as the layer has channels
    vgg_weights: str = option("", "--vgg-weights")  # "" = $NCA_VGG16_WEIGHTS or torchvision's cache; a file

    def __post_init__(self) -> None:
        if not self.image:
            raise UsageError("the style objective needs a style image: --style IMAGE (objectives.style.image)")
        if self.loss not in STYLE_LOSSES:
            raise UsageError(f"objectives.style.loss must be one of {', '.join(STYLE_LOSSES)}, not {self.loss!r}")
        if self.projections < 0:
            raise UsageError(f"objectives.style.projections must be 0 or more, not {self.projections}")
        if self.size < 1:
            raise UsageError(f"objectives.style.size must be at least 1, not {self.size}")


class StyleLoss:
    """Per-sample style loss of the state's visible RGB against a style image: ``(B, C, H, W)`` → ``(B,)``.

    Each layer's term is relative: divided by the style image's own mean square at that layer
    (activations for sot: a random unit projection keeps that mean square on average; Gram entries
    for gram), so the loss is about 0 for the style itself and a few units per layer for a flat
    picture whatever the backbone's weights, and weights against clip and overflow carry over.

    ``generator`` (set by the trainer) draws the sliced-OT projections, afresh at every call; when
    it is None a private generator seeded with ``config.seed`` is used. ``last`` holds
    ``{"style": mean loss}`` of the last call.
    """

    Options = StyleOptions
    # the top-level keys of earlier versions that are now options of this objective
    moved_keys = {
        "style": "image",
        "style_loss": "loss",
        "style_size": "size",
        "style_projections": "projections",
        "vgg_weights": "vgg_weights",
    }
    needs_target = False

    @staticmethod
    def describe(o: StyleOptions) -> str:
        """What it grows towards, in a title or a run directory's name."""
        return f"style {o.image}"

    @staticmethod
    def provenance(o: StyleOptions) -> dict[str, Any]:
        """What a model file's history keeps of it (``vgg_weights`` as the file it came from)."""
        return {
            "style": o.image,
            "style_loss": o.loss,
            "style_size": o.size,
            "vgg_weights": source_of("vgg16", o.vgg_weights),
        }

    @staticmethod
    def keeps(o: StyleOptions) -> dict[str, torch.Tensor]:
        """The tensors a model file keeps of it: the style image, so the style metric can measure the model."""
        return {STYLE_IMAGE: load_style_image(o.image, o.size)[0]}

    @staticmethod
    def untrained(o: StyleOptions) -> list[str]:
        """The networks it would run on random weights (refused outside the test suite)."""
        if o.vgg_weights != "random":
            return []
        check_random_weights("--vgg-weights", "VGG16")
        return ["VGG16"]

    def __init__(self, target: torch.Tensor | None, config: Any, **options: Any) -> None:
        self.config = config
        self.options = o = StyleOptions(**options)
        self.kind: str = o.loss
        self.projections: int = o.projections
        self.background: str = config.background
        self.style_image = load_style_image(o.image, o.size)  # (1, 3, h, w)
        self.vgg = build_vgg(o.vgg_weights)
        self.reference = StyleReference(self.vgg, self.style_image, self.kind)
        self.generator: torch.Generator | None = None
        self.last: dict[str, float] = {}
        self._private: torch.Generator | None = None

    def _generator(self, device: torch.device) -> torch.Generator:
        if self.generator is not None:
            return self.generator
        if self._private is None or self._private.device != device:
            self._private = torch.Generator(device=device)
            self._private.manual_seed(self.config.seed)
        return self._private

    def __call__(self, state: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B,)``, differentiable with respect to ``state``."""
        from ncacli.engine.visible import visible_rgb

        def sliced(layer: int, ours: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor:
            return sliced_ot(ours, theirs, self.projections or ours.shape[1], self._generator(state.device))

        total = self.reference.distance(visible_rgb(state, self.background), sliced)
        self.last = {"style": float(total.detach().mean())}
        return total
