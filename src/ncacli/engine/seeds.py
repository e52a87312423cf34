"""Seeds: the states a rollout starts from."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ncacli.engine.nca import ALPHA


def make_seed(
    batch: int,
    channels: int,
    height: int,
    width: int,
    positions: Sequence[Sequence[float]] = ((0.5, 0.5),),
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Zeros with channels ``ALPHA..C-1`` set to 1 at each seed cell → ``(B, C, H, W)``.

    ``positions`` are ``(x, y)`` fractions of the grid; ``(0.5, 0.5)`` is the centre cell.
    """
    x = torch.zeros(batch, channels, height, width, device=device)
    for px, py in positions:
        col = min(width - 1, max(0, int(px * width)))
        row = min(height - 1, max(0, int(py * height)))
        x[:, ALPHA:, row, col] = 1.0
    return x


def seed_position_for(target: torch.Tensor, threshold: float = 0.5) -> tuple[float, float]:
    """The ``(x, y)`` fraction of the target cell nearest the centre whose alpha ≥ ``threshold``.

    ``target`` is ``(4, H, W)``. The grid centre itself when it is opaque (as with the Distill
    emoji); a seed in empty background would only learn to die, so otherwise the nearest
    opaque cell (the Twemoji lizard is curled around an empty centre).
    """
    _, h, w = target.shape
    alpha = target[ALPHA]
    if not (alpha >= threshold).any():
        threshold = float(alpha.max())
    rows = torch.arange(h, dtype=torch.float32).view(h, 1)
    cols = torch.arange(w, dtype=torch.float32).view(1, w)
    dist = (rows - h // 2) ** 2 + (cols - w // 2) ** 2
    dist = torch.where(alpha >= threshold, dist, torch.full_like(dist, float("inf")))
    index = int(torch.argmin(dist))
    row, col = divmod(index, w)
    return (col + 0.5) / w, (row + 0.5) / h
