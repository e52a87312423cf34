"""Regularisers added to an objective by weight: total variation and overflow.

Both map states ``(B, C, H, W)`` to per-sample values ``(B,)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ncacli.engine.visible import visible_rgb


class TVLoss:
    """Total variation of the visible picture: mean absolute difference of neighbouring cells (nca-clip)."""

    def __init__(self, config: Any) -> None:
        self.background = config.background

    def __call__(self, state: torch.Tensor) -> torch.Tensor:
        rgb = visible_rgb(state, self.background)
        dy = (rgb[:, :, 1:, :] - rgb[:, :, :-1, :]).abs().mean(dim=(1, 2, 3))
        dx = (rgb[:, :, :, 1:] - rgb[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
        return dx + dy


class OverflowLoss:
    """RGB outside [0, 1] and every other channel outside [−1, 1] (NCAtorch eq. 6)."""

    def __init__(self, config: Any = None) -> None:
        pass

    def __call__(self, state: torch.Tensor) -> torch.Tensor:
        rgb, rest = state[:, :3], state[:, 3:]
        over_rgb = (F.relu(rgb - 1.0) + F.relu(-rgb)).mean(dim=(1, 2, 3))
        over_rest = F.relu(rest.abs() - 1.0).mean(dim=(1, 2, 3)) if rest.shape[1] else torch.zeros_like(over_rgb)
        return over_rgb + over_rest
