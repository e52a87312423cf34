"""Image metrics between states and a target, one value per sample.

States are ``(B, C, H, W)`` with premultiplied RGBA in channels 0..3; the target is ``(4, H, W)``.
Both are clamped to [0, 1] first (what a picture of the state shows). MSE and PSNR compare the
premultiplied RGBA; SSIM and LPIPS compare RGB composited over white, the same way for both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ncacli.engine.visible import visible_rgb


def rgba(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` state → ``(B, 4, H, W)`` premultiplied RGBA clamped to [0, 1]."""
    return x[:, :4].clamp(0.0, 1.0)


def composite(x: torch.Tensor) -> torch.Tensor:
    """Premultiplied RGBA ``(B, 4, H, W)`` in [0, 1] → RGB over white ``(B, 3, H, W)``."""
    return visible_rgb(x, "white")


def mse_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error of two pictures ``(B, C, H, W)`` (``b`` may broadcast) → ``(B,)``."""
    return ((a - b) ** 2).flatten(1).mean(1)


def psnr_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB (peak 1.0) of two pictures, capped at 100 dB → ``(B,)``."""
    return 10.0 * torch.log10(1.0 / mse_between(a, b).clamp_min(1e-10))


def mse(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of premultiplied RGBA → ``(B,)``."""
    return mse_between(rgba(x), target.clamp(0, 1))


def psnr(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB (peak 1.0) of premultiplied RGBA, capped at 100 dB → ``(B,)``."""
    return psnr_between(rgba(x), target.clamp(0, 1))


def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) of RGB over white → ``(B,)``.

    An 11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03, data range 1, averaged over the cells
    whose window lies inside the image and over the three channels (as scikit-image's
    ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)``).
    """
    a = composite(rgba(x))
    return structural_similarity(a, composite(target.clamp(0, 1)[None]).expand_as(a), window, sigma)


def structural_similarity(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM of images ``a`` and ``b`` ``(B, C, H, W)`` in [0, 1] (any number of channels: RGB, a grey frame)
    → ``(B,)``, as :func:`ssim` computes it."""
    _, c, h, w = a.shape
    if min(h, w) < window:
        raise ValueError(f"SSIM needs images of at least {window}×{window} cells, not {h}×{w}")
    kernel = _gaussian_window(window, sigma, a.device).expand(c, 1, window, window)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=c)

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


@dataclass(frozen=True)
class Metric:
    """A named metric ``fn(states (B, C, H, W), target (4, H, W)) → (B,)``, and what the verbs need to know of it.

    ``label``: its axis label (default ``name ↑`` or ``↓``); ``decimals``: how a table writes it;
    ``compares_target``: whether it compares with the target picture (a style distance compares with a style
    image instead); ``between``: the same measure between two plain pictures ``(B, C, H, W)`` in [0, 1] of any
    number of channels (a video's grey frames), where it has one; ``min_side``: the smallest picture it reads."""

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    higher_is_better: bool
    label: str = ""
    decimals: int = 4
    compares_target: bool = True
    between: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    min_side: int = 1

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.fn(x, target)


class MetricKind:
    """A metric that is built (it loads a network): the registry's entry for it. It declares what a
    :class:`Metric` declares before one is built, its ``Options`` (a dataclass whose fields may name the
    ``nca evaluate`` flag that sets them), and hooks the evaluation calls:

    - ``build(device, **options) → Metric`` (also ``kind(device, **options)``);
    - ``prepare(model, options) → options``: complete the options from the model evaluated (its own reference);
    - ``reference(options) → (picture, description)``: what it compares with when no metric compares with the
      target (None: the target);
    - ``describe(options) → dict``: what the evaluation's document records of it (backbone, weights' source);
    - ``caption(described) → str | None``: a note under the figures (random weights: not a measure);
    - ``unavailable() → str | None``: why it cannot be measured here without a download."""

    name = ""
    higher_is_better = False
    label = ""
    decimals = 4
    compares_target = True
    between = None
    min_side = 1
    Options: type | None = None

    def __call__(self, device: Any = "cpu", **options: Any) -> Metric:
        return self.build(device, **options)

    def build(self, device: Any, **options: Any) -> Metric:
        raise NotImplementedError

    def metric(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Metric:
        """A :class:`Metric` of ``fn`` with this kind's declarations."""
        return Metric(
            self.name, fn, self.higher_is_better, self.label, self.decimals, self.compares_target, self.between,
            self.min_side,
        )  # fmt: skip

    def prepare(self, model: Any, options: dict[str, Any]) -> dict[str, Any]:
        return options

    def reference(self, options: dict[str, Any]) -> tuple[torch.Tensor, str] | None:
        return None

    def describe(self, options: dict[str, Any]) -> dict[str, Any]:
        return {}

    def caption(self, described: dict[str, Any]) -> str | None:
        return None

    def unavailable(self) -> str | None:
        return None


def declared(name: str) -> Any:
    """What metric ``name`` declares (its :class:`Metric` or :class:`MetricKind`), a default one where no
    installed metric has that name (a document written where a plugin was installed)."""
    from ncacli.registry import METRICS

    return METRICS[name] if name in METRICS else MetricKind()


def label_of(name: str, higher_is_better: bool) -> str:
    """The axis label metric ``name`` declares, else ``name ↑`` / ``name ↓``."""
    return getattr(declared(name), "label", "") or f"{name} {'↑' if higher_is_better else '↓'}"


def metric_options(given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The evaluation's keywords that set a metric's own options (``lpips_net``: ``--lpips-net``), as each
    metric's option fields name their flags → ``{metric: {option: value}}``, checked. A flag given for a metric
    not measured is refused with the metric to add."""
    from ncacli.errors import UsageError
    from ncacli.options import flag_options, option_fields
    from ncacli.registry import METRICS

    names = given.get("metrics") or []
    out = flag_options(METRICS, given)
    for name, values in out.items():
        if names and name not in names:
            flags = " and ".join(f.flag for f in option_fields(METRICS[name]) if f.name in values)
            raise UsageError(
                f"{flags} {'are' if ' and ' in flags else 'is'} read by the {name} metric: add --metric {name}"
            )
        out[name] = METRICS.options(name, values, "nca evaluate")
    return out


def hook(entry: Any, name: str) -> Callable[..., Any]:
    """A metric's hook ``name`` (a :class:`MetricKind`'s), or the default of a plain :class:`Metric`."""
    return getattr(entry, name, None) or getattr(MetricKind(), name)


SSIM_WINDOW = 11

# The built-in metrics, registered as entry points of ncacli.metrics; LPIPS and style are kinds (they build a
# network).
MSE = Metric("mse", mse, False, "MSE ↓", between=mse_between)
PSNR = Metric("psnr", psnr, True, "PSNR (dB) ↑", decimals=2, between=psnr_between)
SSIM = Metric("ssim", ssim, True, "SSIM ↑", between=structural_similarity, min_side=SSIM_WINDOW)


def make_metrics(names: list[str], device: Any = "cpu", options: dict[str, dict[str, Any]] | None = None):
    """``{name: Metric}`` for ``names``: a registered :class:`Metric` as it is, a kind built with its
    ``options[name]`` (LPIPS: net, weights; style: see :mod:`.style_metric`)."""
    from ncacli.registry import METRICS

    out = {}
    for name in names:
        entry = METRICS.get(name, "metric")
        out[name] = entry if isinstance(entry, Metric) else entry(device, **(options or {}).get(name, {}))
    return out
