"""Seeds: the states a rollout starts from."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ncacli.engine.visible import ALPHA
from ncacli.names import SEED_KINDS  # noqa: E402


def make_seed(
    batch: int,
    channels: int,
    height: int,
    width: int,
    positions: Sequence[Sequence[float]] = ((0.5, 0.5),),
    device: torch.device | str = "cpu",
    kind: str = "distill",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The starting states ``(B, C, H, W)``.

    ``distill``: zeros with channels ``ALPHA..C-1`` set to 1 at each seed cell (Growing NCA).
    ``random_color``: at each seed cell a random RGB (one colour per sample, from ``generator``),
    alpha 1, hidden 0 (nca-clip). ``zeros``: an empty grid (texture NCAs without alive masking,
    where the fire mask breaks the symmetry). ``positions`` are ``(x, y)`` fractions of the grid;
    ``(0.5, 0.5)`` is the centre cell.
    """
    if kind not in SEED_KINDS:
        raise ValueError(f"seed kind must be one of {', '.join(SEED_KINDS)}, not {kind!r}")
    x = torch.zeros(batch, channels, height, width, device=device)
    if kind == "zeros":
        return x
    if kind == "random_color":
        colour = torch.rand(batch, 3, generator=generator, device=generator.device if generator else device)
    for px, py in positions:
        col = min(width - 1, max(0, int(px * width)))
        row = min(height - 1, max(0, int(py * height)))
        if kind == "distill":
            x[:, ALPHA:, row, col] = 1.0
        else:
            x[:, :3, row, col] = colour.to(x.device)
            x[:, ALPHA, row, col] = 1.0
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
