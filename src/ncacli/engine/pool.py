"""The sample pool of the persistent and regenerating experiments."""

from __future__ import annotations

import torch


class SamplePool:
    """A pool of states ``(N, C, H, W)``; batches are drawn from it and written back.

    A conditional model's pool also keeps each state's class, ``labels`` ``(N,)``.
    """

    def __init__(self, seed: torch.Tensor, size: int, labels: torch.Tensor | None = None) -> None:
        """``seed`` is one state ``(1, C, H, W)`` (the pool starts as ``size`` copies) or ``size`` states."""
        self.states = seed.clone() if seed.shape[0] == size else seed.repeat(size, 1, 1, 1)
        self.labels = labels.clone().long() if labels is not None else None

    def __len__(self) -> int:
        return self.states.shape[0]

    def sample(self, batch: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``batch`` distinct indices → ``(indices (batch,), states (batch, C, H, W))``."""
        idx = torch.randperm(len(self), generator=generator, device=self.states.device)[:batch]
        return idx, self.states[idx].clone()

    def commit(self, idx: torch.Tensor, states: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Write ``states`` (and their classes) back at ``idx``."""
        self.states[idx] = states.detach().to(self.states.dtype)
        if labels is not None and self.labels is not None:
            self.labels[idx] = labels.to(self.labels.device)
