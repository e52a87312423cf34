"""Perception: what a cell sees of its 3×3 neighbourhood.

A perception maps a state ``(B, C, H, W)`` to features ``(B, C * K, H, W)``.
Fixed-kernel perceptions are depthwise convolutions with ``K`` kernels per channel,
features grouped per channel (``[c0·k0, c0·k1, …, c1·k0, …]``).
New perceptions register with :func:`register_perception` or through the
``ncacli.perceptions`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

IDENTITY = [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
SOBEL_X = [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]
LAPLACIAN = [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]


def pad(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Pad ``(B, C, H, W)`` by ``size`` cells on each side; ``mode`` is ``zeros`` or ``circular``."""
    if mode == "circular":
        return F.pad(x, (size, size, size, size), mode="circular")
    return F.pad(x, (size, size, size, size))


class FixedKernelPerception(nn.Module):
    """Depthwise convolution of every channel with a fixed stack of 3×3 kernels.

    Subclasses set ``kernels``: a list of 3×3 lists. Output ``(B, C * len(kernels), H, W)``.
    """

    kernels: list[list[list[float]]] = []
    receptive_field = 3

    def __init__(self, channels: int, padding: str = "zeros") -> None:
        super().__init__()
        k = torch.tensor(self.kernels, dtype=torch.float32)  # (K, 3, 3)
        self.channels = channels
        self.padding = padding
        self.register_buffer("weight", k.repeat(channels, 1, 1).unsqueeze(1), persistent=False)

    @property
    def features_per_channel(self) -> int:
        return len(self.kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, C * K, H, W)``."""
        if self.padding == "circular":
            return F.conv2d(pad(x, 1, "circular"), self.weight, groups=self.channels)
        return F.conv2d(x, self.weight, padding=1, groups=self.channels)


class Sobel(FixedKernelPerception):
    """Identity + Sobel x/y, each Sobel divided by 8 (the Distill Growing NCA)."""

    kernels = [
        IDENTITY,
        [[v / 8 for v in row] for row in SOBEL_X],
        [[v / 8 for v in col] for col in zip(*SOBEL_X, strict=True)],
    ]


class SobelLaplacian(FixedKernelPerception):
    """Identity + Sobel x/y (/8) + the 5-point Laplacian (/8), as in seed 003."""

    kernels = Sobel.kernels + [[[v / 8 for v in row] for row in LAPLACIAN]]


PERCEPTIONS: dict[str, Callable[..., nn.Module]] = {}


def register_perception(name: str, factory: Callable[..., nn.Module]) -> None:
    """Register a perception class: ``factory(channels, padding=...)`` → module with ``features_per_channel``."""
    PERCEPTIONS[name] = factory


def make_perception(name: str, channels: int, padding: str) -> nn.Module:
    from ncacli.plugins import load_perceptions

    load_perceptions()
    if name not in PERCEPTIONS:
        raise KeyError(name)
    return PERCEPTIONS[name](channels, padding=padding)
