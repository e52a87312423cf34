"""The ``latent`` suite: the NCAtorch review §3.1.5, Table 2 — latent beside pixel space, batch 1, T = W/2.

Latent rows run the NCA on the latent grid of the default autoencoder (a VQ-VAE with 8× compression,
:mod:`ncacli.engine.autoencoder`, random weights: its cost does not depend on them) and decode the last state to
the full picture; training backpropagates the picture's MSE through the decoder and every step, as algorithm 2
does. Pixel rows run the NCA on the picture's own grid, with and without gradient checkpointing.
"""

from __future__ import annotations

import torch
from torch import nn

from ncacli.bench.case import Case
from ncacli.engine.autoencoder import Autoencoder, AutoencoderConfig

SOURCE = "the NCAtorch review §3.1.5 Table 2: batch 1, steps = W/2 of the grid the NCA runs on"
# the review's figures on a 24 GB RTX 4090, per row: (eval ms, eval MB, train MB); None: out of memory
REVIEW = {
    "latent 256²": (0.33, 357, 474),
    "latent 512²": (0.36, 561, 1461),
    "latent 1024²": (0.50, 1514, 7359),
    "pixel 256²": (0.38, 398, 14254),
    "pixel 256² checkpointed": None,  # not in the review: pixel space with gradient checkpointing
    "pixel 512²": None,
}


def latent_cases(sizes: tuple[int, ...] = (256, 512, 1024)) -> list[Case]:
    """Table 2's rows: latent pictures of ``sizes`` (256² / 512² / 1024²: grids 32² / 64² / 128², 16 / 32 / 64
    steps), then pixel space at the smallest (256²: 128 steps) without and with checkpointing every 8 steps."""
    from ncacli.errors import UsageError

    odd = [w for w in sizes if w % 8 or w < 16]
    if odd:
        raise UsageError(f"--sizes {odd[0]}: the latent suite's pictures are multiples of 8 (its compression), ≥ 16")
    rows = [Case("latent", f"latent {w}²", w // 8, w // 8, 1, w // 16, 1, w // 16, SOURCE, latent=8) for w in sizes]
    w = min(sizes)
    rows.append(Case("latent", f"pixel {w}²", w, w, 1, w // 2, 1, w // 2, SOURCE))
    rows.append(Case("latent", f"pixel {w}² checkpointed", w, w, 1, w // 2, 1, w // 2, SOURCE, checkpoint=8))
    return rows


class LatentRollout(nn.Module):
    """An NCA rollout on a latent grid followed by the decoder: ``(B, C, h, w)`` → RGBA ``(B, 4, h·f, w·f)``."""

    def __init__(self, nca: nn.Module, autoencoder: Autoencoder) -> None:
        super().__init__()
        self.nca = nca
        self.autoencoder = autoencoder.requires_grad_(False)
        self.latent = autoencoder.config.latent
        self.perceive = getattr(nca, "perceive", None)

    def rollout(self, x: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.autoencoder.decode(self.nca.rollout(x, steps, generator)[:, : self.latent])

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.nca(x, generator)


def benchmark_autoencoder(factor: int, device: torch.device) -> Autoencoder:
    """The default autoencoder at ``factor``× compression, seeded random weights."""
    levels = factor.bit_length() - 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Autoencoder(AutoencoderConfig(levels=levels)).to(device).eval()
