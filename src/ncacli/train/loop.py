"""The Growing / Persistent / Regenerating training loop (Distill 2020).

All randomness (step counts, pool draws, damage, fire masks) comes from one
``torch.Generator`` whose state is saved for ``--resume``, so an interrupted and resumed
run on the CPU matches an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ncacli.config import Config
from ncacli.engine import NCA, SamplePool, apply_damage, make_seed, random_circles, seed_position_for
from ncacli.losses import LossFn, make_loss


class NonFiniteLoss(Exception):
    """The loss became NaN or infinite at ``iteration`` (1-based)."""

    def __init__(self, iteration: int, value: float) -> None:
        super().__init__(f"loss became {value} at iteration {iteration}")
        self.iteration = iteration
        self.value = value


@dataclass
class Record:
    iteration: int
    loss: float
    lr: float
    steps: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "loss": self.loss,
            "lr": self.lr,
            "steps": self.steps,
            "seconds": round(self.seconds, 4),
        }


class Trainer:
    """Holds everything a run changes: model, optimizer, schedule, pool, generator, iteration."""

    def __init__(self, config: Config, target: torch.Tensor, device: torch.device) -> None:
        self.config = config
        self.device = device
        torch.manual_seed(config.seed)  # weight initialisation
        self.model = NCA(config.model_config()).to(device)
        self.target = target.to(device)
        _, h, w = target.shape
        self.seed_positions = [list(p) for p in config.seed_positions] or [list(seed_position_for(target))]
        self.seed_state = make_seed(1, config.channels, h, w, self.seed_positions, device=device)
        self.seed_state = self.seed_state.contiguous(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(config.lr_milestones), gamma=config.lr_gamma
        )
        self.pool = SamplePool(self.seed_state, config.pool_size) if config.mode != "growing" else None
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(config.seed)
        self.loss_fn: LossFn = make_loss(config.loss, self.target, config)
        self.iteration = 0
        self.seconds = 0.0

    def batch(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The batch for one iteration → ``(pool indices or None, states (B, C, H, W))``."""
        cfg = self.config
        if self.pool is None:
            return None, self.seed_state.repeat(cfg.batch, 1, 1, 1)
        idx, x = self.pool.sample(cfg.batch, self.generator)
        with torch.no_grad():
            order = torch.argsort(self.loss_fn(x), descending=True)
        idx, x = idx[order], x[order]
        x[:1] = self.seed_state
        if cfg.mode == "regenerating" and cfg.damage_count > 0:
            n, (h, w) = cfg.damage_count, x.shape[2:]
            mask = random_circles(n, h, w, self.generator, device=self.device)
            x[-n:] = apply_damage(x[-n:], mask)
        return idx, x

    def step(self) -> Record:
        """One training iteration; raises :class:`NonFiniteLoss` before touching the weights."""
        cfg = self.config
        start = time.perf_counter()
        idx, x = self.batch()
        steps = int(
            torch.randint(cfg.steps_min, cfg.steps_max + 1, (1,), generator=self.generator, device=self.device).item()
        )
        out = self.model.rollout(x, steps, self.generator)
        loss = self.loss_fn(out).mean()
        value = loss.item()
        if not math.isfinite(value):
            raise NonFiniteLoss(self.iteration + 1, value)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_norm:
            with torch.no_grad():
                for p in self.model.parameters():
                    if p.grad is not None:
                        p.grad /= p.grad.norm() + 1e-8
        if not all(torch.isfinite(p.grad).all() for p in self.model.parameters() if p.grad is not None):
            raise NonFiniteLoss(self.iteration + 1, float("nan"))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        if self.pool is not None:
            self.pool.commit(idx, out)
        self.iteration += 1
        self.seconds += time.perf_counter() - start
        return Record(self.iteration, value, lr, steps, self.seconds)

    def parameters_finite(self) -> bool:
        return all(torch.isfinite(p).all() for p in self.model.parameters())

    # resume state: plain tensors and strings only, so it can live in a safetensors file
    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        names = dict(self.model.named_parameters())
        index = {id(p): n for n, p in names.items()}
        for p, st in self.optimizer.state.items():
            for key, value in st.items():
                tensors[f"optim.{index[id(p)]}.{key}"] = torch.as_tensor(value)
        if self.pool is not None:
            tensors["pool"] = self.pool.states
        tensors["target"] = self.target
        tensors["rng"] = self.generator.get_state()
        meta = {
            "iteration": str(self.iteration),
            "seconds": repr(self.seconds),
            "scheduler_last_epoch": str(self.scheduler.last_epoch),
        }
        return tensors, meta

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        names = dict(self.model.named_parameters())
        for name, p in names.items():
            st = {
                k.rsplit(".", 1)[1]: v.to(self.device)
                for k, v in tensors.items()
                if k.startswith(f"optim.{name}.") and k.count(".") == name.count(".") + 2
            }
            if st:
                st["step"] = st["step"].cpu()
                self.optimizer.state[p] = st
        if self.pool is not None:
            self.pool.states = tensors["pool"].to(self.device).contiguous(memory_format=torch.channels_last)
        self.generator.set_state(tensors["rng"])
        self.iteration = int(meta["iteration"])
        self.seconds = float(meta["seconds"])
        self.scheduler.last_epoch = int(meta["scheduler_last_epoch"])
        lr = self.config.lr * self.config.lr_gamma ** sum(
            m <= self.scheduler.last_epoch for m in self.config.lr_milestones
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def grow(self, steps: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
        """Grow ``batch`` states from the seed for ``steps`` steps (for previews) → ``(B, C, H, W)``."""
        g = torch.Generator(device=self.device)
        g.manual_seed(seed)
        with torch.no_grad():
            return self.model.rollout(self.seed_state.repeat(batch, 1, 1, 1), steps, g)


def run(
    trainer: Trainer,
    on_record: Callable[[Record], None],
    on_checkpoint: Callable[[Trainer], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Train until ``config.iters``; returns False if ``should_stop`` ended it early.

    ``on_checkpoint`` is called every ``checkpoint_every`` iterations. A NaN loss raises
    :class:`NonFiniteLoss` with the weights of the last good iteration still in the model.
    """
    cfg = trainer.config
    while trainer.iteration < cfg.iters:
        if should_stop():
            return False
        record = trainer.step()
        on_record(record)
        if trainer.iteration % cfg.checkpoint_every == 0 and trainer.iteration < cfg.iters:
            on_checkpoint(trainer)
    return True
