"""The Growing / Persistent / Regenerating training loop (Distill 2020).

All randomness (step counts, pool draws, damage, fire masks) comes from one
``torch.Generator`` whose state is saved for ``--resume``, so an interrupted and resumed
run on the CPU matches an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ncacli.config import Config
from ncacli.engine import NCA, SamplePool, apply_damage, make_seed, random_circles, seed_position_for
from ncacli.losses.objective import make_objective


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
    terms: dict[str, float] = field(default_factory=dict)  # each objective term and what it reports

    def to_dict(self) -> dict[str, Any]:
        out = {
            "iteration": self.iteration,
            "loss": self.loss,
            "lr": self.lr,
            "steps": self.steps,
            "seconds": round(self.seconds, 4),
        }
        if len(self.terms) > 1:
            out.update(self.terms)
        return out


def grid_of(config: Config, target: torch.Tensor | None) -> tuple[int, int]:
    """The grid ``(H, W)``: the target's, or ``size + 2·padding`` square without one."""
    if target is not None:
        return int(target.shape[1]), int(target.shape[2])
    side = config.size + 2 * config.padding
    return side, side


def lr_factor(config: Config, iteration: int) -> float:
    """The learning rate at ``iteration`` as a fraction of ``config.lr``.

    ``step``: ×``lr_gamma`` at each milestone passed (Distill). ``cosine``: from ``lr`` down to
    ``lr_min`` over ``iters`` iterations (seed 000: 2e-3 → 1e-4).
    """
    if config.lr_schedule == "cosine":
        t = min(iteration, config.iters) / max(config.iters, 1)
        lr = config.lr_min + (config.lr - config.lr_min) * 0.5 * (1.0 + math.cos(math.pi * t))
        return lr / config.lr
    return config.lr_gamma ** sum(m <= iteration for m in config.lr_milestones)


class Trainer:
    """Holds everything a run changes: model, optimizer, schedule, pool, generator, iteration."""

    def __init__(self, config: Config, target: torch.Tensor | None, device: torch.device) -> None:
        """``target`` is ``(4, H, W)``, or None when the objective needs none (CLIP, style): the grid is
        then ``size + 2·padding`` square."""
        self.config = config
        self.device = device
        torch.manual_seed(config.seed)  # weight initialisation
        self.model = NCA(config.model_config()).to(device)
        self.target = target.to(device) if target is not None else None
        self.grid = grid_of(config, target)
        default = [list(seed_position_for(target))] if target is not None else [[0.5, 0.5]]
        self.seed_positions = [list(p) for p in config.seed_positions] or default
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda it: lr_factor(config, it))
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(config.seed)
        self.pool = SamplePool(self.seeds(config.pool_size), config.pool_size) if config.mode != "growing" else None
        self.loss_fn = make_objective(config, self.target)
        self.loss_fn.generator = self.generator
        self.iteration = 0
        self.seconds = 0.0

    def seeds(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` seed states ``(n, C, H, W)`` (random colours come from ``generator``, else the trainer's)."""
        cfg = self.config
        x = make_seed(
            n, cfg.channels, *self.grid, self.seed_positions, self.device, cfg.seed_kind, generator or self.generator
        )
        return x.contiguous(memory_format=torch.channels_last)

    def batch(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The batch for one iteration → ``(pool indices or None, states (B, C, H, W))``."""
        cfg = self.config
        if self.pool is None:
            return None, self.seeds(cfg.batch)
        idx, x = self.pool.sample(cfg.batch, self.generator)
        with torch.no_grad():
            order = torch.argsort(self.loss_fn(x), descending=True)
        idx, x = idx[order], x[order]
        x[:1] = self.seeds(1)
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
        out = self.model.rollout(
            x, steps, self.generator, truncate=cfg.truncate_backprop, checkpoint=cfg.checkpoint_steps
        )
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
        return Record(self.iteration, value, lr, steps, self.seconds, dict(self.loss_fn.last))

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
        if self.target is not None:
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
        lr = self.config.lr * lr_factor(self.config, self.scheduler.last_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def grow(self, steps: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
        """Grow ``batch`` states from the seed for ``steps`` steps (for previews) → ``(B, C, H, W)``."""
        g = torch.Generator(device=self.device)
        g.manual_seed(seed)
        with torch.no_grad():
            return self.model.rollout(self.seeds(batch, g), steps, g)


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
