"""Conditions: what a conditional NCA is told to grow (the NCAtorch review §3.1.2, the Fun with NCA report).

A conditional model reads ``K`` condition channels beside its state: the perception sees the state
and the condition together, and the update writes the state only, so damage and alive masking
never touch the condition. A condition is ``(B or 1, K, H or 1, W or 1)``: a one-hot class
broadcast over the grid (what training uses), or a map giving each cell its own mix of classes
(spatial conditioning: paint where each rule is expressed).
"""

from __future__ import annotations

import torch


def one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Class indices ``(B,)`` → one-hot conditions ``(B, K, 1, 1)``."""
    return torch.nn.functional.one_hot(labels.long(), classes).float()[:, :, None, None]


def other_labels(labels: torch.Tensor, classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random class different from each of ``labels`` ``(B,)`` (the NCAtorch review's mutation: c′ ≠ c)."""
    if classes < 2:
        raise ValueError("mutation needs at least two classes")
    shift = torch.randint(1, classes, labels.shape, generator=generator, device=labels.device)
    return (labels + shift) % classes


def ramp(values: torch.Tensor, classes: int) -> torch.Tensor:
    """Brightness ``(..., H, W)`` in [0, 1] → conditions ``(..., K, H, W)``.

    0 is the first class and 1 the last; values between blend the two neighbouring classes
    linearly (with two classes, the brightness is how much of the second rule is expressed).
    """
    if classes < 1:
        raise ValueError("a condition needs at least one class")
    position = values.clamp(0.0, 1.0).unsqueeze(-3) * (classes - 1)
    ks = torch.arange(classes, dtype=values.dtype, device=values.device).view(classes, 1, 1)
    return (1.0 - (position - ks).abs()).clamp_min(0.0)
