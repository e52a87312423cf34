"""A counter-based random generator for the fire mask: the same numbers on every device and in a browser.

``torch.rand`` differs between CPU and CUDA and cannot be reproduced outside PyTorch. A
:class:`CounterRandom` draws each cell's number from a hash of ``(seed, call, sample, cell)``, all in
32-bit unsigned arithmetic that a GLSL shader (``nca render out.html``), a fused kernel or plain Python
computes identically. ``NCA.forward`` takes one wherever it takes a ``torch.Generator``.

The hash is ``lowbias32`` (a 32-bit integer mixer). For call ``t`` (0-based, counted per generator),
sample ``b`` and cell ``(y, x)`` of a ``W``-wide grid::

    key = mix(mix(mix(seed) ^ t) ^ b)
    u   = (mix(key ^ (y * W + x)) >> 8) / 2**24        # in [0, 1), exact in float32
"""

from __future__ import annotations

import torch

MASK = 0xFFFFFFFF


def mix(x: torch.Tensor | int) -> torch.Tensor | int:
    """``lowbias32`` on 32-bit unsigned values, held in int64 tensors or Python ints."""
    x = x & MASK
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & MASK
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & MASK
    return x ^ (x >> 16)


class CounterRandom:
    """Uniform numbers in [0, 1) from ``(seed, call, sample, cell)``; ``calls`` counts the draws made."""

    def __init__(self, seed: int = 0, calls: int = 0) -> None:
        self.seed = int(seed) & MASK
        self.calls = int(calls)

    def uniform(self, batch: int, height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """``(batch, 1, height, width)`` float32 numbers for the next call."""
        key = mix(mix(self.seed) ^ (self.calls & MASK))
        self.calls += 1
        samples = torch.arange(batch, device=device, dtype=torch.int64).view(batch, 1, 1, 1)
        cells = torch.arange(height * width, device=device, dtype=torch.int64).view(1, 1, height, width)
        bits = mix(mix(samples ^ key) ^ cells)
        return (bits >> 8).to(torch.float32) * (1.0 / 16777216.0)

    # the rollout's gradient checkpointing saves and replays a generator's position
    def get_state(self) -> int:
        return self.calls

    def set_state(self, calls: int) -> None:
        self.calls = int(calls)
