"""Classifier-free guidance (Ho and Salimans) for an NCA whose class lives in its state, not in an input.

A diffusion model is guided by running its network twice on the same input, with the class and without, and
taking ``uncond + w·(cond − uncond)``. An NCA that grows a digit from a seed cell whose colour names the class
has no class input to drop: the class is in the state, and after a few steps it is everywhere the pattern has
grown. So the unconditional update comes from a second state grown beside the first from the *null* seed (the
colour training gave the samples whose class it dropped), in lockstep, with the same fire masks. At every step
both states are perceived and updated as one batch; the null state takes its own update ``u``, the guided one
``u + w·(c − u)`` where ``c`` is its own; the alive masks apply to each as in a plain step. ``w = 1`` is the plain
conditional growth, ``w = 0`` the unconditional one; ``w > 1`` pushes towards what the class adds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Observer = Callable[[int, torch.Tensor], torch.Tensor | None]


def guided_step(nca: Any, both: torch.Tensor, scale: float, generator: Any = None) -> torch.Tensor:
    """One step of ``both`` ``(2B, C, H, W)``: the guided states, then the null ones (see the module)."""
    half = both.shape[0] // 2
    fire = None
    if nca.config.fire_rate < 1.0:
        fire = nca.fire_mask(both[:half], generator).repeat(2, 1, 1, 1)

    def blended(x: torch.Tensor) -> torch.Tensor:
        d = nca.delta(x)
        cond, uncond = d[:half], d[half:]
        return torch.cat([uncond + scale * (cond - uncond), uncond])

    return nca.reference_step(both, fire=fire, delta=blended)


class Guided:
    """Runs an NCA's growth with guidance scale ``scale``, the null branch from ``null`` ``(1, C, H, W)`` (on the
    grid grown): what a verb runs in the NCA's place (:attr:`ncacli.tasks.Schedule.runner`)."""

    def __init__(self, nca: Any, null: torch.Tensor, scale: float) -> None:
        if nca.config.condition_channels:
            raise ValueError("guidance here is for models whose class is in the seed, not in condition channels")
        self.nca, self.null, self.scale = nca, null, float(scale)

    def rollout(
        self,
        x: torch.Tensor,
        steps: int,
        generator: Any = None,
        observe: Observer | None = None,
        condition: Any = None,
    ) -> torch.Tensor:
        """``steps`` guided steps from ``x`` ``(B, C, H, W)``; the null branch starts from its seed whatever ``x``
        is, and ``observe(step, x)`` sees (and may replace: damage) the guided states alone."""
        if condition is not None:
            raise ValueError("a guided growth reads no condition")
        n = x.shape[0]
        null = self.null.to(x.device, x.dtype).expand(n, -1, -1, -1)
        if null.shape[2:] != x.shape[2:]:
            raise ValueError(f"the null seed's grid {tuple(null.shape[2:])} is not the growth's {tuple(x.shape[2:])}")
        both = torch.cat([x, null]).contiguous(memory_format=torch.channels_last)
        for step in range(1, steps + 1):
            both = guided_step(self.nca, both, self.scale, generator)
            if observe is not None:
                replaced = observe(step, both[:n])
                if replaced is not None:
                    both = torch.cat([replaced.to(both.dtype), both[n:]]).contiguous(memory_format=torch.channels_last)
        return both[:n]
