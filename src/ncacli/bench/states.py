"""Where a benchmark's rollouts start.

The engine's active-cell step does work in proportion to the cells that are alive, so the start state is
part of the workload, and the report says which one ran and how much of the grid was alive:

- ``grown`` (the default): the pattern a trained model works on. A trained model (``nca benchmark MODEL``)
  grows its own pattern from its seed first (untimed); the default random-weight model starts from the
  Distill target itself, the Twemoji lizard fitted into 40/72 of the grid's side like Distill's 40-pixel
  lizard in its 72×72 grid, with the hidden channels set to 1 where the lizard is (as in the seed cell).
- ``seed``: the seed alone (a model that has not learned to grow keeps almost every cell dead).
- ``full``: every cell alive, random values: the most work a step can have.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ncacli.engine import ALPHA, NCA, make_seed
from ncacli.names import BENCH_STARTS as STARTS  # noqa: E402

DISTILL_FILL = 40 / 72  # the lizard's share of the grid's side in the Distill setting
GROW_STEPS = 96

Start = Callable[[int, int, int], torch.Tensor]  # (batch, height, width) → (B, C, H, W) on the CPU


def lizard_state(batch: int, channels: int, height: int, width: int) -> torch.Tensor:
    """The Distill target as a state ``(B, C, H, W)``: RGBA premultiplied, hidden channels 1 under the lizard."""
    import torch.nn.functional as F

    from ncacli.io.images import emoji_path, image_to_rgba

    side = max(1, round(DISTILL_FILL * min(height, width)))
    rgba = image_to_rgba(emoji_path("🦎").read_bytes(), "🦎", side)
    top, left = (height - rgba.shape[1]) // 2, (width - rgba.shape[2]) // 2
    rgba = F.pad(rgba, (left, width - rgba.shape[2] - left, top, height - rgba.shape[1] - top))
    x = torch.zeros(batch, channels, height, width)
    x[:, :4] = rgba
    x[:, ALPHA + 1 :] = (rgba[3] > 0).float()
    return x


def full_state(batch: int, channels: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Every cell alive: alpha 1, the other channels uniform in [0, 1) from ``seed``."""
    x = torch.rand(batch, channels, height, width, generator=torch.Generator().manual_seed(seed))
    x[:, ALPHA] = 1.0
    return x


def start_for(
    kind: str, model: NCA, seed_of: Callable[[int, int, int], torch.Tensor] | None = None, trained: bool = False
) -> Start:
    """The start-state maker of ``kind`` for ``model``.

    ``seed_of(batch, height, width)`` gives the model's own seed (default: the Distill seed at the centre);
    ``trained``: ``grown`` grows the model's own pattern for :data:`GROW_STEPS` steps instead of using the lizard.
    """
    if kind not in STARTS:
        raise ValueError(f"start must be one of {', '.join(STARTS)}, not {kind!r}")
    channels = model.config.channels
    seeds = seed_of or (lambda b, h, w: make_seed(b, channels, h, w))
    if kind == "seed":
        return seeds
    if kind == "full":
        return lambda b, h, w: full_state(b, channels, h, w)
    if not trained:
        return lambda b, h, w: lizard_state(b, channels, h, w)

    def grown(b: int, h: int, w: int) -> torch.Tensor:
        device = next(model.parameters()).device
        with torch.no_grad():
            generator = torch.Generator(device=device).manual_seed(0)
            return model.rollout(seeds(b, h, w).to(device), GROW_STEPS, generator).cpu()

    return grown


def alive_fraction(model: NCA, x: torch.Tensor, steps: int, generator: torch.Generator) -> float:
    """The mean share of cells alive at the start of each of ``steps`` steps from ``x`` (1.0 without alive
    masking, where every cell updates)."""
    if not model.config.alive_masking:
        return 1.0
    shares: list[torch.Tensor] = [model.alive(x).float().mean()]
    with torch.no_grad():
        model.rollout(x, steps - 1, generator, observe=lambda i, s: shares.append(model.alive(s).float().mean()))
    return float(torch.stack(shares).mean())
