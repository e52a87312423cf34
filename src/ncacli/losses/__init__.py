"""Training objectives, one module each, through :data:`ncacli.registry.OBJECTIVES`.

An objective factory takes ``(target, config, **options)`` — the target ``(4, H, W)`` premultiplied RGBA (or
None), the resolved :class:`ncacli.config.Config`, and the options a preset gives it under
``[loss_options.NAME]`` (checked against the factory's ``Options`` or its keyword parameters) — and returns a
callable mapping states ``(B, C, H, W)`` to per-sample losses ``(B,)``. The factory may say:

- ``needs_target`` (default True): whether it compares against a target image;
- ``extra_terms(config, term)``: more terms it brings along (the CLIP loss brings the growth loss), as
  ``[(name, weight, fn)]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ncacli.registry import OBJECTIVES

LossFn = Callable[[torch.Tensor], torch.Tensor]
LOSSES = OBJECTIVES  # the name 0.1.0 used


def register_loss(name: str, factory: Callable[..., LossFn]) -> None:
    OBJECTIVES.register(name, factory)


def needs_target(name: str) -> bool:
    """Whether objective ``name`` compares against a target image (a plugin that does not say is assumed to)."""
    return bool(getattr(OBJECTIVES.get(name, "loss"), "needs_target", True))


def make_loss(name: str, target: torch.Tensor | None, config: Any) -> LossFn:
    factory = OBJECTIVES.get(name, "loss")
    options = getattr(config, "loss_options", {}).get(name, {})
    return factory(target, config, **options)
