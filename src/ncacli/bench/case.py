"""A benchmark case: one grid with the batch and steps of a training iteration and of an inference rollout."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    """One configuration: grid, and batch × steps for a training iteration and for an inference rollout."""

    suite: str
    name: str
    height: int
    width: int
    train_batch: int
    train_steps: int
    infer_batch: int
    infer_steps: int
    source: str
    time_limited: bool = False  # skip a measurement estimated to take longer than --max-seconds
    latent: int = 0  # the NCA runs on a latent grid this many times smaller, decoded at the end (0: pixel space)
    checkpoint: int | None = None  # the engine's training checkpoints every N steps (None: as --checkpoint says)

    def phase(self, phase: str) -> tuple[int, int]:
        """``(batch, steps)`` of ``train`` or ``inference``."""
        return (self.train_batch, self.train_steps) if phase == "train" else (self.infer_batch, self.infer_steps)
