"""Perturbations: masks of cells to erase from a state ``(B, C, H, W)``.

Coordinates are fractions of the grid: ``center = (x, y)`` in [0, 1], ``radius`` a fraction
of the grid's width (a circle's radius, a square's half side).
"""

from __future__ import annotations

import torch

from ncacli.names import DAMAGE_SHAPES as SHAPES  # noqa: E402


def _grid(height: int, width: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    return ys.view(1, height, 1), xs.view(1, 1, width)


def damage_mask(
    height: int,
    width: int,
    shape: str = "circle",
    center: torch.Tensor | tuple[float, float] = (0.5, 0.5),
    radius: torch.Tensor | float = 0.2,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Cells to erase, ``(N, 1, H, W)`` bool; ``center`` may be ``(N, 2)`` and ``radius`` ``(N,)``."""
    if shape not in SHAPES:
        raise ValueError(f"unknown damage shape {shape!r}; choose from {', '.join(SHAPES)}")
    ys, xs = _grid(height, width, device)
    c = torch.as_tensor(center, dtype=torch.float32, device=device).reshape(-1, 2)
    r = torch.as_tensor(radius, dtype=torch.float32, device=device).reshape(-1, 1, 1)
    cx, cy = c[:, 0].view(-1, 1, 1), c[:, 1].view(-1, 1, 1)
    aspect = height / width
    if shape == "circle":
        mask = (xs - cx) ** 2 + ((ys - cy) * aspect) ** 2 < r**2
    elif shape == "square":
        mask = ((xs - cx).abs() < r) & (((ys - cy) * aspect).abs() < r)
    elif shape == "left":
        mask = (xs < cx) & (ys >= 0)
    elif shape == "right":
        mask = (xs >= cx) & (ys >= 0)
    elif shape == "top":
        mask = (ys < cy) & (xs >= 0)
    else:
        mask = (ys >= cy) & (xs >= 0)
    return mask.unsqueeze(1)


def apply_damage(state: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero every channel of the cells in ``mask`` ``(B or 1, 1, H, W)``; returns a new state."""
    return state * ~mask


def random_circles(
    n: int,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    radius: tuple[float, float] = (0.05, 0.2),
    alive: torch.Tensor | None = None,
) -> torch.Tensor:
    """Training damage → ``(n, 1, H, W)``: circles of radius uniform in ``radius`` (fractions of the width).

    The defaults are Distill's: centres uniform in [0.25, 0.75], radii in [0.05, 0.2] of the width (that is,
    centre in [-0.5, 0.5] and radius in [0.1, 0.4] of the half-width). With ``alive`` ``(n, H, W)`` bool, each
    centre is instead one of its sample's living cells, drawn uniformly (the grid's centre when none lives), as
    ``nca evaluate`` places its cut.
    """
    if alive is None:
        center = torch.rand(n, 2, generator=generator, device=device) * 0.5 + 0.25
    else:
        center = living_cells(alive, generator)
    low, high = radius
    r = torch.rand(n, generator=generator, device=device) * (high - low) + low
    return damage_mask(height, width, "circle", center, r, device=device)


def living_cells(alive: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One living cell of each sample of ``alive`` ``(n, H, W)`` bool, drawn uniformly, as ``(n, 2)`` (x, y)
    fractions at the cell's centre; the grid's centre for a sample with none."""
    n, h, w = alive.shape
    weights = alive.reshape(n, -1).float()
    empty = weights.sum(1) == 0
    cell = torch.multinomial(weights + empty.unsqueeze(1).float(), 1, generator=generator).squeeze(1)
    xy = torch.stack([(cell % w + 0.5) / w, (cell // w + 0.5) / h], dim=1)
    return torch.where(empty.unsqueeze(1), torch.full_like(xy, 0.5), xy)
