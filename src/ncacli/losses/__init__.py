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
  ``[(name, weight, fn)]``;
- ``takes_samples`` (default False): it is called ``fn(states, samples)`` with the batch's :class:`Samples`
  (each sample's own real picture and condition, where the task has them: a translation pair's target and
  input) instead of comparing with the one target;
- ``needs_real`` (default False): it learns from real pictures (a critic), so only a task that has them
  (``Task.real_samples``) trains with it;
- ``state_tensors()`` / ``load_state_tensors(tensors)`` on the callable: networks of its own that learn beside
  the NCA (a critic and its optimiser), kept in the run's resume file and never in the model file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ncacli.registry import OBJECTIVES

LossFn = Callable[[torch.Tensor], torch.Tensor]
LOSSES = OBJECTIVES  # the name 0.1.0 used


@dataclass(frozen=True)
class Samples:
    """What a batch's samples are of: ``real`` ``(B, 4, H, W)`` premultiplied RGBA, each sample's ground truth (or
    None), and ``condition`` ``(B, K, H, W)``, what the cells read (or None)."""

    real: torch.Tensor | None = None
    condition: torch.Tensor | None = None


def takes_samples(name: str) -> bool:
    """Whether objective ``name`` judges each sample against its own real picture when given them."""
    return bool(getattr(OBJECTIVES.get(name, "loss"), "takes_samples", False))


def register_loss(name: str, factory: Callable[..., LossFn]) -> None:
    OBJECTIVES.register(name, factory)


def needs_target(name: str) -> bool:
    """Whether objective ``name`` compares against a target image (a plugin that does not say is assumed to)."""
    return bool(getattr(OBJECTIVES.get(name, "loss"), "needs_target", True))


def make_loss(name: str, target: torch.Tensor | None, config: Any) -> LossFn:
    factory = OBJECTIVES.get(name, "loss")
    options = config.objectives.get(name, {})
    return factory(target, config, **options)
