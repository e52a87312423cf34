"""What a state looks like: its RGB as a picture, ``(B, C, H, W)`` → ``(B, 3, H, W)`` in [0, 1].

States keep RGB premultiplied by alpha. ``background`` says what shows through dead cells:
``white`` (the Distill pictures), ``black`` (nca-clip's CLIP runs), or ``none`` (RGB alone, alpha
ignored: texture models, whose alpha channel is just another hidden channel).
"""

from __future__ import annotations

import torch

from ncacli.names import BACKGROUNDS

ALPHA = 3  # the alpha channel of a state: channels 0..2 are RGB (premultiplied), the rest hidden


def clamp01(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] with gradient 1 on the closed interval (``Tensor.clamp`` gives 0 at the bounds, which
    would freeze a texture grown from an all-zero seed)."""
    return torch.where((x >= 0.0) & (x <= 1.0), x, x.clamp(0.0, 1.0))


def visible_rgb(x: torch.Tensor, background: str = "white") -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B, 3, H, W)`` in [0, 1], differentiable inside [0, 1] and at its bounds."""
    rgb = clamp01(x[:, :3])
    if background == "white":
        return clamp01(1.0 - clamp01(x[:, ALPHA : ALPHA + 1]) + rgb)
    if background in ("black", "none"):
        return rgb
    raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, not {background!r}")
