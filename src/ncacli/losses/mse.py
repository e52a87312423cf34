"""Mean squared error on the visible RGBA channels (the Growing NCA objective)."""

from __future__ import annotations

from typing import Any

import torch


class MSELoss:
    """Per-sample MSE between the state's RGBA ``(B, 4, H, W)`` and the premultiplied target ``(4, H, W)``."""

    def __init__(self, target: torch.Tensor, config: Any = None) -> None:
        self.target = target

    def __call__(self, state: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B,)``."""
        return ((state[:, :4] - self.target) ** 2).mean(dim=(1, 2, 3))
