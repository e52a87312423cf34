"""LPIPS (Zhang et al. 2018) through the ``lpips`` package.

The learned linear heads ship inside ``lpips``; the backbone (AlexNet, VGG16 or SqueezeNet 1.1)
comes from torchvision's cache (``$TORCH_HOME/hub/checkpoints``), downloaded there on first use as
torchvision does. A local file of the backbone's weights (a torchvision state dict, whole or ``features.*``
only) can be named instead, by ``--lpips-weights FILE`` or once for a machine by ``NCA_ALEXNET_WEIGHTS``
(``NCA_VGG16_WEIGHTS``, ``NCA_SQUEEZENET_WEIGHTS``; see :mod:`ncacli.io.weights`), and
``weights="random"`` builds a randomly initialised backbone through the same path (for tests).
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ncacli.errors import NcaError, UsageError, check_random_weights
from ncacli.evaluation.metrics import Metric, MetricKind, composite, rgba
from ncacli.io.weights import LPIPS_BACKBONES, VARIABLES, WeightsFileError, read_features, source_of, weights_file
from ncacli.options import option

NETS = ("alex", "vgg", "squeeze")
# the smallest side LPIPS sees: AlexNet's pooling needs ≥ 31 cells, so small grids are scaled up (nearest)
MIN_SIDE = 64


def backbone_weights(net: str):
    """torchvision's weights entry for an LPIPS backbone (its URL names the cached file)."""
    from torchvision.models import AlexNet_Weights, SqueezeNet1_1_Weights, VGG16_Weights

    return {
        "alex": AlexNet_Weights.IMAGENET1K_V1,
        "vgg": VGG16_Weights.IMAGENET1K_V1,
        "squeeze": SqueezeNet1_1_Weights.IMAGENET1K_V1,
    }[net]


def cache_path(net: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(backbone_weights(net).url).name


def weights_at_hand(net: str = "alex") -> bool:
    """Whether LPIPS's backbone weights can be had without a download: a file named by the backbone's
    variable, or torchvision's cached file."""
    return weights_file(LPIPS_BACKBONES[net]) is not None or cache_path(net).exists()


def _missing_message(net: str, reason: str) -> str:
    url = backbone_weights(net).url
    return (
        f"LPIPS ({net}) needs the torchvision backbone weights {Path(url).name}: not in {cache_path(net).parent} "
        f"and not downloadable here ({reason}). Put the file from {url} there, name a local copy with "
        f"--lpips-weights FILE or ${VARIABLES[LPIPS_BACKBONES[net]]}, or measure without LPIPS: --metric mse,psnr,ssim"
    )


def build_lpips(net: str = "alex", weights: str | None = None):
    """An ``lpips.LPIPS`` network. ``weights``: None (the backbone's variable, else torchvision's cache), a file
    path, or ``"random"``."""
    import lpips

    if net not in NETS:
        raise UsageError(f"--lpips-net {net!r}: choose from {', '.join(NETS)}")
    weights = weights_file(LPIPS_BACKBONES[net], weights)
    if weights == "random":
        check_random_weights("--lpips-weights", f"LPIPS {net} backbone")
    pretrained = weights is None
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
        warnings.simplefilter("ignore")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # a "random" backbone is the same one every time
            try:
                model = lpips.LPIPS(net=net, pnet_rand=not pretrained, verbose=False)
            except (OSError, RuntimeError) as exc:  # URLError is an OSError; a corrupt cache file a RuntimeError
                if not pretrained:
                    raise
                reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
                raise NcaError(_missing_message(net, str(reason))) from None
    if weights not in (None, "random"):
        _load_backbone_file(model, net, weights)
    return model.eval()


def _load_backbone_file(model, net: str, path: str) -> None:
    """Copy a torchvision state dict of the backbone (whole, e.g. ``alexnet-owt-7be5be79.pth``, or its
    ``features.*`` only) into the LPIPS backbone."""
    from torchvision import models

    build = {"alex": models.alexnet, "vgg": models.vgg16, "squeeze": models.squeezenet1_1}[net]
    features = build(weights=None).features
    try:
        read_features(path, LPIPS_BACKBONES[net], features, "--lpips-weights")
    except WeightsFileError as exc:
        raise NcaError(str(exc)) from None
    for slice_ in model.net.children():
        for index, layer in slice_.named_children():
            layer.load_state_dict(features[int(index)].state_dict())


def to_lpips_input(x: torch.Tensor) -> torch.Tensor:
    """Premultiplied RGBA ``(B, 4, H, W)`` → RGB over white in [−1, 1], scaled up to ``MIN_SIDE`` if smaller."""
    rgb = composite(x) * 2.0 - 1.0
    side = min(rgb.shape[-2:])
    if side < MIN_SIDE:
        rgb = F.interpolate(rgb, scale_factor=math.ceil(MIN_SIDE / side), mode="nearest")
    return rgb


def lpips_metric(net: str = "alex", weights: str | None = None, device="cpu") -> Metric:
    """LPIPS with backbone ``net`` (alex, vgg, squeeze) and ``weights`` (None: torchvision's cache)."""
    return LPIPS.build(device, net, weights)


@dataclass
class LpipsOptions:
    net: str = option("alex", "--lpips-net")  # alex, vgg or squeeze
    weights: str | None = option(None, "--lpips-weights")  # None: $NCA_ALEXNET_WEIGHTS or torchvision's cache


class LpipsKind(MetricKind):
    """The registry's LPIPS entry."""

    name = "lpips"
    label = "LPIPS ↓"
    Options = LpipsOptions

    def build(self, device: Any = "cpu", net: str = "alex", weights: str | None = None) -> Metric:
        model = build_lpips(net, weights).to(device)

        def fn(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            a = to_lpips_input(rgba(x))
            b = to_lpips_input(target.clamp(0, 1)[None].to(a.device)).expand_as(a)
            return model(a, b, normalize=False).flatten()

        return self.metric(fn)

    def describe(self, options: dict[str, Any]) -> dict[str, Any]:
        net = options.get("net", "alex")
        return {"lpips_net": net, "lpips_weights": source_of(LPIPS_BACKBONES[net], options.get("weights"))}

    def caption(self, described: dict[str, Any]) -> str | None:
        if described.get("lpips_weights") == "random":
            return "lpips with a random backbone (--lpips-weights random): a test of the pipeline, not a measure"
        return None

    def unavailable(self) -> str | None:
        if weights_at_hand("alex"):
            return None
        return f"no AlexNet weights here (${VARIABLES[LPIPS_BACKBONES['alex']]} or torchvision's cache)"


LPIPS = LpipsKind()
