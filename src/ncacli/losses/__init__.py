"""Training objectives, one module each, registered by name.

A loss factory takes ``(target, config)`` — the target ``(4, H, W)`` premultiplied RGBA and
the resolved :class:`ncacli.config.Config` — and returns a callable mapping states
``(B, C, H, W)`` to per-sample losses ``(B,)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

LossFn = Callable[[torch.Tensor], torch.Tensor]
LOSSES: dict[str, Callable[..., LossFn]] = {}


def register_loss(name: str, factory: Callable[..., LossFn]) -> None:
    LOSSES[name] = factory


def make_loss(name: str, target: torch.Tensor, config: Any) -> LossFn:
    from ncacli.plugins import load_losses

    load_losses()
    if name not in LOSSES:
        raise KeyError(name)
    return LOSSES[name](target, config)
