"""The style metric: how far a state's texture is from a style image, by the texture loss's own measure.

Per sample, the relative VGG16 style distance of :mod:`ncacli.losses.style` (sliced optimal transport or
Gram matrices over relu1_1…relu5_1, each layer divided by the style's own mean square) between the
state's visible RGB and the style image: about 0 for the style itself, a few units per layer for a flat
picture. Unlike the loss, whose sliced-OT projections are drawn afresh at every call, the metric's are
drawn once from ``seed`` on the CPU, so a value depends on the picture alone and stages, steps and
devices compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ncacli.errors import NcaError, UsageError
from ncacli.evaluation.metrics import Metric, MetricKind
from ncacli.losses.style import STYLE_LAYERS, StyleReference, VGGFeatures, build_vgg, sliced_ot_along, unit_directions
from ncacli.names import STYLE_LOSSES
from ncacli.options import option


def style_rgb(image: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """A style image ``(3 or 4, H, W)`` (or with a leading 1) → RGB ``(1, 3, h, w)`` in [0, 1].

    Premultiplied RGBA is composited over white, as the style loss reads a style file; with ``size``, a
    picture larger than ``size`` pixels is scaled down to fit (keeping its aspect), as the loss fits it.
    """
    from ncacli.engine.visible import visible_rgb

    t = image[0] if image.ndim == 4 and image.shape[0] == 1 else image
    if t.ndim != 3 or t.shape[0] not in (3, 4) or min(t.shape[1:]) < 1:
        raise ValueError(f"a style image is (3 or 4, H, W), not {list(image.shape)}")
    rgb = visible_rgb(t[None].float(), "white") if t.shape[0] == 4 else t[None].float().clamp(0.0, 1.0)
    h, w = rgb.shape[-2:]
    if size is not None and max(h, w) > size:
        fit = size / max(h, w)
        rgb = F.interpolate(
            rgb, size=(max(1, round(h * fit)), max(1, round(w * fit))), mode="bilinear", antialias=True
        ).clamp(0.0, 1.0)
    return rgb


class StyleDistance:
    """``fn(states (B, C, H, W), style image (3 or 4, H', W')) → (B,)``; ``image`` (when given) is the
    style image used whatever the call's second argument (a metric beside others that compare a target)."""

    def __init__(
        self, vgg: VGGFeatures, kind: str, size: int | None, seed: int, background: str, image: torch.Tensor | None
    ) -> None:
        self.vgg, self.kind, self.size, self.background = vgg, kind, size, background
        generator = torch.Generator().manual_seed(seed)
        channels = [vgg.features[i - 1].out_channels for i in STYLE_LAYERS]  # the convolution before each ReLU
        self.directions = [unit_directions(c, c, generator) for c in channels]  # (C_l, C_l) each, on the CPU
        self._on: dict[tuple, list[torch.Tensor]] = {}
        self.bound = StyleReference(vgg, style_rgb(image, size), kind) if image is not None else None
        self._last: tuple[tuple, StyleReference] | None = None  # the reference of the last target seen

    def reference(self, target: torch.Tensor) -> StyleReference:
        if self.bound is not None:
            return self.bound
        key = (target.data_ptr(), tuple(target.shape), str(target.device), target._version)
        if self._last is None or self._last[0] != key:
            self._last = (key, StyleReference(self.vgg, style_rgb(target, self.size), self.kind))
        return self._last[1]

    def _directions(self, layer: int, like: torch.Tensor) -> torch.Tensor:
        key = (layer, like.device, like.dtype)
        if key not in self._on:
            self._on[key] = self.directions[layer].to(like.device, like.dtype)
        return self._on[key]

    def __call__(self, states: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from ncacli.engine.visible import visible_rgb

        def sliced(layer: int, ours: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor:
            return sliced_ot_along(ours, theirs, self._directions(layer, ours))

        return self.reference(target).distance(visible_rgb(states, self.background), sliced)


def style_factory(
    device: Any = "cpu",
    weights: str | None = None,
    loss: str = "sot",
    size: int | None = None,
    seed: int = 0,
    background: str = "white",
    image: torch.Tensor | None = None,
    about: str = "",
) -> Metric:
    """The style metric → :class:`~ncacli.evaluation.metrics.Metric` "style".

    ``weights``: None (torchvision's VGG16 through its cache), a local torchvision VGG16 state dict, or
    ``"random"`` (tests only). ``loss``: ``sot`` or ``gram``. ``size``: style images larger than this are
    scaled down to fit (None: as given). ``seed``: the sliced-OT projections. ``background``: how a state's
    RGB is seen (the model's own: ``white``, ``black`` or ``none``). ``image``: a fixed style image (``about``:
    its description).
    """
    if loss not in STYLE_LOSSES:
        raise UsageError(f"the style metric's loss must be one of {', '.join(STYLE_LOSSES)}, not {loss!r}")
    if size is not None and size < 1:
        raise UsageError(f"the style metric's size must be at least 1, not {size}")
    distance = StyleDistance(build_vgg(weights or ""), loss, size, seed, background, image)
    if distance.bound is not None:
        distance.bound.prepare(torch.device(device))
    return STYLE.metric(distance)


@dataclass
class StyleMetricOptions:
    image: Any = option(None, "--style")  # a file; None: the style image the model file keeps
    weights: str | None = option(None, "--vgg-weights")  # None: $NCA_VGG16_WEIGHTS or torchvision's cache
    loss: str | None = None  # None: the model's own (sot by default)
    size: int | None = None
    seed: int = 0
    background: str | None = None  # None: the model's own


class StyleKind(MetricKind):
    """The registry's style metric: a texture's distance from its style image, which it finds itself."""

    name = "style"
    label = "VGG style distance ↓"
    compares_target = False  # it compares with a style image, the model's own or --style
    Options = StyleMetricOptions

    def build(self, device: Any = "cpu", **options: Any) -> Metric:
        return style_factory(device, **options)

    def prepare(self, model: Any, options: dict[str, Any]) -> dict[str, Any]:
        """The style image (``--style FILE``, fitted as the model's training fitted its own, or the one the model
        file keeps), and the model's own measure and background where not given."""
        from ncacli.config import run_config_near
        from ncacli.losses.style import STYLE_IMAGE, StyleOptions, load_style_image

        out = dict(options)
        given = options.get("image")
        if isinstance(given, str):
            run = run_config_near(model.path)
            size = model.provenance.get("style_size") or (
                run.objectives.get(self.name, {}).get("size") if run else None
            )
            size = size or StyleOptions.__dataclass_fields__["size"].default
            out["image"], out["about"] = load_style_image(given, int(size))[0], f"style {given}"
        elif given is None:
            stored = model.task.tensors.get(STYLE_IMAGE)
            if stored is None:
                raise NcaError(
                    f"{model.path}: no style image in the model (a model of the {model.spec.task.name} task, or one "
                    "saved before texture models kept theirs); name one with --style FILE"
                )
            out["image"], out["about"] = stored, model.provenance.get("target") or "the model's style image"
        out["loss"] = options.get("loss") or model.provenance.get("style_loss") or "sot"
        out["background"] = options.get("background") or model.spec.task.background
        return out

    def reference(self, options: dict[str, Any]) -> tuple[torch.Tensor, str] | None:
        return options["image"], options.get("about", "")

    def describe(self, options: dict[str, Any]) -> dict[str, Any]:
        from ncacli.io.weights import source_of

        weights = source_of("vgg16", options.get("weights"))
        return {"style": options.get("about"), "style_loss": options.get("loss"), "vgg_weights": weights}

    def caption(self, described: dict[str, Any]) -> str | None:
        if described.get("vgg_weights") == "random":
            return "style with a random VGG16 (--vgg-weights random): a test of the pipeline, not a measure"
        return None


STYLE = StyleKind()
