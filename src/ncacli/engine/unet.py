"""The single-pass baseline of the NCAtorch review's Tables 1 and 6: a U-Net that maps a state, and what it reads
(a class, an input image), to the next state in one pass (``--model unet``; ``--model pix2pix`` trains the same
network against a conditional critic).

It takes the model's place everywhere a model runs: it has the NCA's :meth:`rollout`, and a rollout of any number
of steps is one pass, held. "Single-step models without iterative updates; their scores are evaluated at the same
three pipeline stages but do not involve further rollouts": the pass runs at the first step and again at the step
after anything changed the state from outside (an observer's damage) or its condition (a mutation), the state
otherwise held. So the growing protocol measures, at stage 1 and 2, the picture made from the seed; at stage 3 the
picture made from the damaged one (or under the switched condition). A training iteration is one pass from the
batch's states (seeds, and pool states that carry earlier passes, some damaged): the network learns to make the
picture from a seed and to repair it.

The network: ``levels`` down steps (two 3×3 convolutions with ReLU, then a stride-2 3×3 convolution), a bottom
block, and as many up steps (nearest upsampling, a 3×3 convolution, the skip concatenated, two 3×3 convolutions),
``width`` channels at the top, doubled at each level; a 1×1 convolution to the state's channels. Its input is the
state with the condition broadcast after it; a grid whose sides are not multiples of ``2^levels`` is padded with
zeros and cropped back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ncacli.engine.nca import Condition, Generator, ModelConfig, Observer

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2)}  # leaky: pix2pix's encoder's slope


def block(cin: int, cout: int, activation: str = "relu") -> nn.Sequential:
    act = ACTIVATIONS[activation]
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), act(), nn.Conv2d(cout, cout, 3, padding=1), act())


class UNet(nn.Module):
    """``config.architecture_options``: ``width`` (8), ``levels`` (3) and ``activation`` (``relu``, or
    ``leaky_relu`` with slope 0.2, pix2pix's: a thin U-Net's ReLUs can all go dead). The receptive field is
    ``10·2^levels − 5`` cells (75 at 3 levels): a picture grown from one seed cell needs it to span the grid, or
    the cells far from the seed cannot tell where they are (at 2 levels, 35 cells, Table 1's 72-cell grid came out
    as blurred squares of each class's mean colour)."""

    capabilities = frozenset()  # it does not step: no page, no fractal growth
    active_ok = False
    # how it trains where --set does not say otherwise (a preset's are an NCA's): plain Adam at pix2pix's rate,
    # without the NCA's per-parameter gradient normalisation
    training = {"lr": 2e-4, "grad_norm": False}

    def __init__(self, config: ModelConfig, width: int = 8, levels: int = 3, activation: str = "relu") -> None:
        super().__init__()
        if width < 1 or levels < 1:
            raise ValueError(f"a U-Net needs width ≥ 1 and levels ≥ 1, not width {width}, levels {levels}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}")
        self.config = config
        self.levels = levels
        seen = config.channels + config.condition_channels
        widths = [width * 2**i for i in range(levels + 1)]
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        cin = seen
        for w in widths[:-1]:
            self.down.append(block(cin, w, activation))
            self.pool.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
            cin = w
        self.bottom = block(cin, widths[-1], activation)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w, below in zip(reversed(widths[:-1]), reversed(widths[1:]), strict=True):
            self.up.append(nn.Conv2d(below, w, 3, padding=1))
            self.merge.append(block(2 * w, w, activation))
        self.out = nn.Conv2d(widths[0], config.channels, 1)
        self.engine = "reference"

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """One pass: ``(B, C, H, W)`` (and the condition ``(B, K, H, W)``, broadcast) → ``(B, C, H, W)``."""
        k = self.config.condition_channels
        if k:
            if condition is None or condition.ndim != 4 or condition.shape[1] != k:
                got = "none" if condition is None else list(condition.shape)
                raise ValueError(f"a conditional model with {k} classes needs a condition (B, {k}, H, W), got {got}")
            x = torch.cat([x, condition.to(x.dtype).expand(x.shape[0], k, *x.shape[2:])], dim=1)
        elif condition is not None:
            raise ValueError("this model is not conditional; it takes no condition")
        h, w = x.shape[2:]
        m = 2**self.levels
        y = F.pad(x, (0, -w % m, 0, -h % m))
        skips = []
        for down, pool in zip(self.down, self.pool, strict=True):
            y = down(y)
            skips.append(y)
            y = pool(y)
        y = self.bottom(y)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips), strict=True):
            y = up(F.interpolate(y, size=skip.shape[2:], mode="nearest"))
            y = merge(torch.cat([y, skip], dim=1))
        return self.out(y)[:, :, :h, :w]

    def rollout(
        self,
        x: torch.Tensor,
        steps: int,
        generator: Generator = None,
        observe: Observer | None = None,
        truncate: int = 0,
        checkpoint: int = 0,
        condition: Condition = None,
    ) -> torch.Tensor:
        """``steps`` steps of the pipeline from ``x``: the pass at step 1, and at the step after an observer
        replaced the state or the condition changed; held otherwise (see the module). The NCA's training options
        (``truncate``, ``checkpoint``) and its fire masks (``generator``) have nothing to act on."""
        at: Callable[[int], Any] = condition if callable(condition) else (lambda _: condition)
        fresh, last = True, None
        for i in range(1, steps + 1):
            c = at(i)
            if fresh or c is not last:
                x = self(x, c)
                fresh, last = False, c
            if observe is not None:
                replaced = observe(i, x)
                if replaced is not None:
                    x, fresh = replaced, True
        return x
