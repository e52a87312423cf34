"""Update rules: features ``(B, F, H, W)`` → state change ``(B, C, H, W)``.

The Distill update is a per-cell MLP made of 1×1 convolutions whose last layer
starts at zero, so an untrained model leaves the state unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def linear(conv: nn.Conv2d, rows: torch.Tensor) -> torch.Tensor:
    """A 1×1 convolution applied to rows ``(N, in)`` → ``(N, out)``."""
    return F.linear(rows, conv.weight.flatten(1), conv.bias)


ACTIVATIONS = ("relu", "leaky_relu")  # of the hidden layers; leaky_relu: slope 0.2, the NCAtorch review's


class MLPUpdate(nn.Module):
    """1×1-convolution MLP: ``in_features → hidden (ReLU) × depth → channels``.

    ``depth`` counts the hidden layers (1 in the Distill model: 48→128→16, 8,336 parameters
    with ``sobel`` on 16 channels). The output layer is zero-initialised. ``activation="leaky_relu"``
    (slope 0.2) is the NCAtorch review's hidden activation.
    """

    # rows: runs on gathered cells (the active engine); page: the page runs it; fused: the fused kernel
    # (with one hidden layer) and the benchmark reference
    capabilities = frozenset({"rows", "page", "fused"})

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if ("forward" in cls.__dict__ or "rows" in cls.__dict__) and "capabilities" not in cls.__dict__:
            cls.capabilities = frozenset()

    def __init__(
        self, in_features: int, channels: int, hidden: int = 128, depth: int = 1, activation: str = "relu"
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}")
        if activation != "relu":  # the page and the fused kernel run ReLU
            self.capabilities = frozenset(self.capabilities) - {"page", "fused"}
        self.activation = activation
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            act = nn.ReLU(inplace=True) if activation == "relu" else nn.LeakyReLU(0.2, inplace=True)
            layers += [nn.Conv2d(width, hidden, 1), act]
            width = hidden
        out = nn.Conv2d(width, channels, 1)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        layers.append(out)
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, F, H, W)`` → ``(B, C, H, W)``."""
        return self.net(features)

    def layers(self) -> list[tuple[nn.Conv2d, bool, bool]]:
        """Its 1×1 layers as ``(layer, ReLU after it, residual)``: what the page (:mod:`ncacli.web.program`),
        the fused kernel and the benchmark's reference run."""
        convs = [m for m in self.net if isinstance(m, nn.Conv2d)]
        return [(c, i < len(convs) - 1, False) for i, c in enumerate(convs)]

    def rows(self, features: torch.Tensor) -> torch.Tensor:
        """The same update on one row per cell: ``(N, F)`` → ``(N, C)``."""
        h = features
        for layer in self.net:
            if isinstance(layer, nn.Conv2d):
                h = linear(layer, h)
            else:
                h = torch.relu(h) if self.activation == "relu" else F.leaky_relu(h, 0.2)
        return h


class ResidualMLPUpdate(nn.Module):
    """1×1-convolution MLP with residual hidden blocks: ``in_features → hidden``, then ``depth − 1`` blocks
    ``h ← h + ReLU(W h + b)``, then ``→ channels`` (zero-initialised). ``depth = 1`` is the plain MLP."""

    capabilities = frozenset({"rows", "page"})

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if ("forward" in cls.__dict__ or "rows" in cls.__dict__) and "capabilities" not in cls.__dict__:
            cls.capabilities = frozenset()

    def __init__(self, in_features: int, channels: int, hidden: int = 128, depth: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_features, hidden, 1), nn.ReLU(inplace=True))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(hidden, hidden, 1), nn.ReLU(inplace=True)) for _ in range(depth - 1)
        )
        self.out = nn.Conv2d(hidden, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, F, H, W)`` → ``(B, C, H, W)``."""
        h = self.stem(features)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)

    def layers(self) -> list[tuple[nn.Conv2d, bool, bool]]:
        """Its 1×1 layers: the stem, each residual block, the output layer (see :meth:`MLPUpdate.layers`)."""
        blocks = [(block[0], True, True) for block in self.blocks]
        return [(self.stem[0], True, False), *blocks, (self.out, False, False)]

    def rows(self, features: torch.Tensor) -> torch.Tensor:
        """The same update on one row per cell: ``(N, F)`` → ``(N, C)``."""
        h = torch.relu(linear(self.stem[0], features))
        for block in self.blocks:
            h = h + torch.relu(linear(block[0], h))
        return linear(self.out, h)


def register_update(name: str, factory: Any) -> None:
    """Register an update rule from code: ``factory(in_features, channels, hidden=, depth=, **options)``."""
    UPDATES.register(name, factory)


def make_update(name: str, in_features: int, channels: int, hidden: int, depth: int, options: dict | None = None):
    return UPDATES.get(name, "update")(in_features, channels, hidden=hidden, depth=depth, **(options or {}))


from ncacli.registry import UPDATES  # noqa: E402
