"""Update rules: features ``(B, F, H, W)`` → state change ``(B, C, H, W)``.

The Distill update is a per-cell MLP made of 1×1 convolutions whose last layer
starts at zero, so an untrained model leaves the state unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class MLPUpdate(nn.Module):
    """1×1-convolution MLP: ``in_features → hidden (ReLU) × depth → channels``.

    ``depth`` counts the hidden layers (1 in the Distill model: 48→128→16, 8,336 parameters
    with ``sobel`` on 16 channels). The output layer is zero-initialised.
    """

    def __init__(self, in_features: int, channels: int, hidden: int = 128, depth: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Conv2d(width, hidden, 1), nn.ReLU(inplace=True)]
            width = hidden
        out = nn.Conv2d(width, channels, 1)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        layers.append(out)
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, F, H, W)`` → ``(B, C, H, W)``."""
        return self.net(features)


UPDATES: dict[str, Callable[..., nn.Module]] = {"mlp": MLPUpdate}


def register_update(name: str, factory: Callable[..., nn.Module]) -> None:
    """Register an update rule: ``factory(in_features, channels, hidden=, depth=)``."""
    UPDATES[name] = factory
