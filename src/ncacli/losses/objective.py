"""The training objective: a weighted sum of named per-sample terms.

``loss = "style+clip"`` with ``loss_weights = {style = 1.0, clip = 0.5}`` gives
``1.0·style + 0.5·clip``; a term may bring others along (the clip term the growth loss, ``growth_weight``), and
``tv_weight`` / ``overflow_weight`` add the regularisers. Each call records the mean of every
term, and the metrics the terms report themselves (``clip_score``, ``alive``), in ``last``.
"""

from __future__ import annotations

from typing import Any

import torch

from ncacli.losses import LossFn, Samples, make_loss
from ncacli.losses import needs_target as term_needs_target
from ncacli.registry import OBJECTIVES


def needs_target(config: Any) -> bool:
    """Whether the objective compares against a target image (the one question, asked of every term)."""
    from ncacli.config import loss_names

    return any(term_needs_target(name) for name in loss_names(config.loss))


class Objective:
    """``state (B, C, H, W)`` → ``Σ weight · term(state)``, per sample ``(B,)``."""

    def __init__(self, terms: list[tuple[str, float, LossFn]]) -> None:
        self.terms = terms
        self.last: dict[str, float] = {}
        # one plain term (the Distill MSE) has nothing to report beyond the loss: skip the device syncs
        self.records = len(terms) > 1 or any(hasattr(fn, "last") for _, _, fn in terms)
        self._generator: torch.Generator | None = None

    @property
    def generator(self) -> torch.Generator | None:
        return self._generator

    @generator.setter
    def generator(self, generator: torch.Generator | None) -> None:
        """Hand the trainer's generator to every term that draws random numbers (augmentations, projections)."""
        self._generator = generator
        for _, _, fn in self.terms:
            if hasattr(fn, "generator"):
                fn.generator = generator

    def __call__(self, state: torch.Tensor, samples: Samples | None = None) -> torch.Tensor:
        """``state (B, C, H, W)`` → ``(B,)``; ``samples``: each sample's real picture and condition, for the terms
        that take them (``takes_samples``), where the task has them."""
        total: torch.Tensor | None = None
        last: dict[str, float] = {}
        for name, weight, fn in self.terms:
            value = fn(state, samples) if samples is not None and getattr(fn, "takes_samples", False) else fn(state)
            total = weight * value if total is None else total + weight * value
            if self.records:
                last[name] = float(value.detach().mean())
                last.update(getattr(fn, "last", {}) or {})
        self.last = last
        assert total is not None
        return total

    def state_tensors(self, prefix: str = "objective.") -> dict[str, torch.Tensor]:
        """The tensors of the terms' own networks that learn beside the NCA (a critic), for the resume file."""
        out: dict[str, torch.Tensor] = {}
        for name, _, fn in self.terms:
            if hasattr(fn, "state_tensors"):
                out.update({f"{prefix}{name}.{k}": v for k, v in fn.state_tensors().items()})
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], prefix: str = "objective.") -> None:
        for name, _, fn in self.terms:
            if hasattr(fn, "load_state_tensors"):
                head = f"{prefix}{name}."
                fn.load_state_tensors({k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)})


def make_objective(config: Any, target: torch.Tensor | None) -> Objective:
    """The objective ``config`` names; ``target`` is ``(4, H, W)`` or None when no term needs one."""
    from ncacli.config import loss_names
    from ncacli.losses.regularisers import OverflowLoss, TVLoss

    names = loss_names(config.loss)
    terms: list[tuple[str, float, LossFn]] = [
        (name, float(config.loss_weights.get(name, 1.0)), make_loss(name, target, config)) for name in names
    ]
    for name, _, fn in list(terms):
        extra = getattr(OBJECTIVES.get(name), "extra_terms", None)
        if extra is not None:
            terms += extra(config, fn)
    if config.tv_weight > 0:
        terms.append(("tv", config.tv_weight, TVLoss(config)))
    if config.overflow_weight > 0:
        terms.append(("overflow", config.overflow_weight, OverflowLoss(config)))
    return Objective(terms)


def describe_objectives(config: Any) -> str:
    """What the objectives that need no target grow towards (``style grass.png, prompt 'a cat'``), or ""."""
    from ncacli.config import loss_names

    parts = []
    for name in loss_names(config.loss):
        describe = getattr(OBJECTIVES.get(name, "loss"), "describe", None)
        if describe is not None:
            parts.append(describe(config.objective(name)))
    return ", ".join(parts)
