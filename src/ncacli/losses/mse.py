"""Distances of the visible RGBA to the ground truth: the mean squared error (the Growing NCA objective) and the
mean absolute error (L1, pix2pix's reconstruction term)."""

from __future__ import annotations

from typing import Any

import torch

from ncacli.losses import Samples


class MSELoss:
    """Per-sample MSE between the state's RGBA ``(B, 4, H, W)`` and the premultiplied target ``(4, H, W)``, or each
    sample's own real picture where the batch's :class:`~ncacli.losses.Samples` carry them (translation pairs)."""

    takes_samples = True

    def __init__(self, target: torch.Tensor | None, config: Any = None) -> None:
        self.target = target

    def reference(self, samples: Samples | None) -> torch.Tensor:
        real = samples.real if samples is not None else None
        if real is None and self.target is None:
            raise ValueError(f"the {type(self).__name__} has no target and was given no real samples")
        return real if real is not None else self.target

    def distance(self, diff: torch.Tensor) -> torch.Tensor:
        return diff**2

    def __call__(self, state: torch.Tensor, samples: Samples | None = None) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B,)``."""
        return self.distance(state[:, :4] - self.reference(samples)).mean(dim=(1, 2, 3))


class L1Loss(MSELoss):
    """Per-sample mean absolute difference of the RGBA to the target (or each sample's real picture)."""

    def distance(self, diff: torch.Tensor) -> torch.Tensor:
        return diff.abs()
