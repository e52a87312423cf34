"""The raw-pixel baseline of nca-clip: optimise one picture's pixels directly under the same objective.

There is no NCA and no locality: every pixel is a free parameter (a sigmoid keeps it in [0, 1]).
nca-clip found such pictures reach far better CLIP scores than any NCA and look like adversarial
noise; this trainer lets a user reproduce that comparison with the same augmentations and terms.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from ncacli.config import Config
from ncacli.losses.objective import make_objective
from ncacli.train.loop import NonFiniteLoss, Record, grid_of, lr_factor
from ncacli.train.session import Saver


class PixelTrainer:
    """Holds the picture's logits ``(1, 3, H, W)``, the optimizer, the schedule and the generator."""

    def __init__(self, config: Config, target: torch.Tensor | None, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.target = target.to(device) if target is not None else None
        h, w = grid_of(config, target)
        self.logits = torch.zeros(1, 3, h, w, device=device, requires_grad=True)  # mid-grey
        self.optimizer = torch.optim.Adam([self.logits], lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda it: lr_factor(config, it))
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(config.seed)
        self.loss_fn = make_objective(config, self.target)
        self.loss_fn.generator = self.generator
        self.iteration = 0
        self.seconds = 0.0

    def state(self) -> torch.Tensor:
        """The picture as a fully alive state ``(1, 4, H, W)``."""
        rgb = torch.sigmoid(self.logits)
        return torch.cat([rgb, torch.ones_like(rgb[:, :1])], dim=1)

    def cells(self) -> int:
        return 0  # no rollout: the progress bar shows iterations per second

    def parameters_finite(self) -> bool:
        return bool(torch.isfinite(self.logits).all())

    def step(self) -> Record:
        start = time.perf_counter()
        loss = self.loss_fn(self.state()).mean()
        value = loss.item()
        if not math.isfinite(value):
            raise NonFiniteLoss(self.iteration + 1, value)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.iteration += 1
        self.seconds += time.perf_counter() - start
        return Record(self.iteration, value, lr, 0, self.seconds, dict(self.loss_fn.last))


def pixel_saver(config: Any, run_dir: Any) -> Saver:
    """nca-clip's baseline writes pictures: a checkpoint PNG every ``checkpoint_every``, then pixels.png."""
    from ncacli.io.files import atomic_write_bytes
    from ncacli.io.images import grid_png

    image = run_dir.path / "pixels.png"

    def write(path: Path, tr) -> Path:
        with torch.no_grad():
            atomic_write_bytes(path, grid_png(tr.state(), scale=1, background=config.background))
        return path

    return Saver(
        checkpoint=lambda tr: write(run_dir.path / "checkpoints" / f"step-{tr.iteration:06d}.png", tr),
        final=lambda tr: write(image, tr),
        kept=lambda: sorted((run_dir.path / "checkpoints").glob("step-*.png")),
        done=f"picture: {image}",
        resume_hint="pixels runs cannot be resumed",
        outputs={"image": str(image)},
    )
