"""Training objectives, one module each, through :data:`ncacli.registry.OBJECTIVES`.

An objective factory takes ``(target, config, **options)`` — the target ``(4, H, W)`` premultiplied RGBA (or
None), the resolved :class:`ncacli.config.Config`, and its own options, the ``[objectives.NAME]`` section
(checked against the factory's ``Options`` or its keyword parameters) — and returns a
callable mapping states ``(B, C, H, W)`` to per-sample losses ``(B,)``. The factory may say:

- ``needs_target`` (default True): whether it compares against a target image;
- ``moved_keys``: top-level configuration keys of earlier versions that are now its options (old → option),
  read at their new place with one line saying so;
- ``describe(options)``, ``provenance(options)``: what it grows towards, in a title and a run directory's
  name, and what a model file's history keeps of its options;
- ``untrained(options)``: the networks it would run on random weights (the test suite's), refusing them
  elsewhere;
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
    options = config.objectives.get(name, {})
    return factory(target, config, **options)
