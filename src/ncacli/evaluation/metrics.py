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


def mse(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of premultiplied RGBA → ``(B,)``."""
    return ((rgba(x) - target.clamp(0, 1)) ** 2).flatten(1).mean(1)


def psnr(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB (peak 1.0) of premultiplied RGBA, capped at 100 dB → ``(B,)``."""
    return 10.0 * torch.log10(1.0 / mse(x, target).clamp_min(1e-10))


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
    """A named metric ``fn(states (B, C, H, W), target (4, H, W)) → (B,)``."""

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    higher_is_better: bool

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.fn(x, target)


# The built-in metrics, registered as entry points of ncacli.metrics; LPIPS is a factory (it builds a network).
MSE = Metric("mse", mse, higher_is_better=False)
PSNR = Metric("psnr", psnr, higher_is_better=True)
SSIM = Metric("ssim", ssim, higher_is_better=True)
BASIC = {"mse": MSE, "psnr": PSNR, "ssim": SSIM}


def make_metric(name: str, device: Any = "cpu", **options: Any) -> Metric:
    """The metric ``name``: a registered :class:`Metric`, or one built by its factory ``f(device, **options)``."""
    from ncacli.registry import METRICS

    entry = METRICS.get(name, "metric")
    return entry if isinstance(entry, Metric) else entry(device, **options)


def make_metrics(
    names: list[str],
    lpips_net: str = "alex",
    lpips_weights: str | None = None,
    device="cpu",
    style: dict[str, Any] | None = None,
):
    """``{name: Metric}`` for ``names``; ``lpips`` takes its backbone and weights (see :mod:`.lpips_metric`),
    ``style`` the options of :func:`~ncacli.evaluation.style_metric.style_factory` (weights, loss, size,
    seed, background, image)."""
    options = {"lpips": {"net": lpips_net, "weights": lpips_weights}, "style": style or {}}
    return {name: make_metric(name, device, **options.get(name, {})) for name in names}
