"""The Growing / Persistent / Regenerating training loop (Distill 2020).

All randomness (step counts, pool draws, damage, fire masks) comes from one
``torch.Generator`` whose state is saved for ``--resume``, so an interrupted and resumed
run on the CPU matches an uninterrupted one. Under torchrun each process (rank) trains on its shard of
the batch and pool with a generator of its own; :mod:`ncacli.train.distributed` has the rest.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ncacli.config import Config
from ncacli.engine import (
    NCA,
    SamplePool,
    apply_damage,
    make_seed,
    one_hot,
    other_labels,
    random_circles,
    seed_position_for,
)
from ncacli.losses.objective import make_objective
from ncacli.train.distributed import World, generator_seed, shard_of


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
    """The grid ``(H, W)``: the target's (or targets'), or ``size + 2·padding`` square without one."""
    if target is not None:
        return int(target.shape[-2]), int(target.shape[-1])
    side = config.size + 2 * config.padding
    return side, side


def lr_factor(config: Config, iteration: int) -> float:
    """The learning rate at ``iteration`` as a fraction of ``config.lr``.

    ``step``: ×``lr_gamma`` at each milestone passed (Distill). ``cosine``: from ``lr`` down to
    ``lr_min`` over ``iters`` iterations (nca-clip: 2e-3 → 1e-4).
    """
    if config.lr_schedule == "cosine":
        t = min(iteration, config.iters) / max(config.iters, 1)
        lr = config.lr_min + (config.lr - config.lr_min) * 0.5 * (1.0 + math.cos(math.pi * t))
        return lr / config.lr
    return config.lr_gamma ** sum(m <= iteration for m in config.lr_milestones)


class Trainer:
    """Holds everything a run changes: model, optimizer, schedule, pool, generator, iteration."""

    def __init__(
        self, config: Config, target: torch.Tensor | None, device: torch.device, world: World | None = None
    ) -> None:
        """``target`` is ``(4, H, W)``; for a conditional model (``condition_channels = K``) the targets
        ``(K, 4, H, W)``, one per class; or None when the objective needs none (CLIP, style): the grid
        is then ``size + 2·padding`` square. ``world``: this process's rank under torchrun (None without);
        it then trains on its :class:`~ncacli.train.distributed.Shard` of the batch and pool."""
        self.config = config
        self.device = device
        self.world = world
        self.shard = shard_of(config, world)  # without torchrun: the config's batch, pool and counts
        self.classes = config.condition_channels
        if self.classes and (target is None or target.ndim != 4 or target.shape[0] != self.classes):
            got = None if target is None else list(target.shape)
            raise ValueError(
                f"a conditional model with {self.classes} classes needs ({self.classes}, 4, H, W) targets, not {got}"
            )
        torch.manual_seed(config.seed)  # weight initialisation
        self.model = NCA(config.model_config()).to(device)
        if world is not None:  # the same weights on every rank
            world.broadcast_([*self.model.parameters(), *self.model.buffers()])
        self.target = target.to(device) if target is not None else None
        self.grid = grid_of(config, target)
        if target is None:
            default = [[0.5, 0.5]]
        else:  # a conditional model grows every class from one seed: where the targets overlap most
            default = [list(seed_position_for(target.mean(0) if self.classes else target))]
        self.seed_positions = [list(p) for p in config.seed_positions] or default
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda it: lr_factor(config, it))
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(generator_seed(config.seed, world))
        self.pool = None
        if config.mode != "growing":
            size, start = self.shard.pool_size, self.shard.pool_start
            labels = torch.arange(start, start + size, device=device) % self.classes if self.classes else None
            self.pool = SamplePool(self.seeds(size), size, labels)
        if self.classes:
            assert self.target is not None
            self.objectives = [make_objective(config, t) for t in self.target]
        else:
            self.objectives = [make_objective(config, self.target)]
        for objective in self.objectives:
            objective.generator = self.generator
        self.loss_fn = self.objectives[0]
        self.iteration = 0
        self.seconds = 0.0

    def seeds(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` seed states ``(n, C, H, W)`` (random colours come from ``generator``, else the trainer's)."""
        cfg = self.config
        x = make_seed(
            n, cfg.channels, *self.grid, self.seed_positions, self.device, cfg.seed_kind, generator or self.generator
        )
        return x.contiguous(memory_format=torch.channels_last)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample loss ``(B,)``; a conditional model's samples against their own class's target."""
        if labels is None:
            return self.loss_fn(x)
        total = x.new_zeros(x.shape[0])
        for k in labels.unique().tolist():
            total = torch.where(labels == k, self.objectives[k](x), total)
        return total

    def condition(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        return one_hot(labels, self.classes) if labels is not None else None

    def random_labels(self, n: int) -> torch.Tensor | None:
        if not self.classes:
            return None
        return torch.randint(self.classes, (n,), generator=self.generator, device=self.device)

    def batch(self) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """The batch for one iteration → ``(pool indices or None, states (B, C, H, W), classes (B,) or None)``.

        Sorted by loss, worst first: the worst is replaced by a seed; in ``regenerating`` mode the
        ``damage_count`` best get a hole, and in a conditional run the ``mutation_count`` next best
        are switched to another class (the NCAtorch review).
        """
        cfg, batch = self.config, self.shard.batch
        if self.pool is None:
            return None, self.seeds(batch), self.random_labels(batch)
        idx, x = self.pool.sample(batch, self.generator)
        labels = self.pool.labels[idx] if self.pool.labels is not None else None
        with torch.no_grad():
            order = torch.argsort(self.loss(x, labels), descending=True)
        idx, x = idx[order], x[order]
        x[:1] = self.seeds(1)
        damaged = self.shard.damage_count if cfg.mode == "regenerating" else 0
        if damaged > 0:
            (h, w) = x.shape[2:]
            mask = random_circles(damaged, h, w, self.generator, device=self.device)
            x[-damaged:] = apply_damage(x[-damaged:], mask)
        if labels is not None:
            labels = labels[order]
            labels[:1] = self.random_labels(1)
            if self.shard.mutation_count:
                end = batch - damaged
                start = end - self.shard.mutation_count
                labels[start:end] = other_labels(labels[start:end], self.classes, self.generator)
        return idx, x, labels

    def step(self) -> Record:
        """One training iteration; raises :class:`NonFiniteLoss` before touching the weights."""
        cfg = self.config
        start = time.perf_counter()
        idx, x, labels = self.batch()
        steps = int(
            torch.randint(cfg.steps_min, cfg.steps_max + 1, (1,), generator=self.generator, device=self.device).item()
        )
        if self.world is not None:  # every rank rolls out as many steps as rank 0
            steps = self.world.broadcast_int(steps)
        out = self.model.rollout(
            x,
            steps,
            self.generator,
            truncate=cfg.truncate_backprop,
            checkpoint=cfg.checkpoint_steps,
            condition=self.condition(labels),
        )
        loss = self.loss(out, labels).mean()
        value = loss.item() if self.world is None else self.world.mean_loss(loss)  # NaN if any rank's is
        if not math.isfinite(value):
            raise NonFiniteLoss(self.iteration + 1, value)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.world is not None:  # averaged before the normalisation: the same step on every rank
            self.world.average_gradients(self.model.parameters())
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
            self.pool.commit(idx, out, labels)
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
            if self.pool.labels is not None:
                tensors["pool_labels"] = self.pool.labels
        if self.target is not None:
            tensors["target"] = self.target
        tensors["rng"] = self.generator.get_state()
        meta = {
            "iteration": str(self.iteration),
            "seconds": repr(self.seconds),
            "scheduler_last_epoch": str(self.scheduler.last_epoch),
        }
        if self.world is not None:  # the whole pool and every rank's generator, on rank 0
            self.world.gather_resume(tensors, meta)
        return tensors, meta

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
        if self.world is not None:  # this rank's rows of the pool and its generator
            tensors = self.world.local_resume(tensors)
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
            if self.pool.labels is not None:
                self.pool.labels = tensors["pool_labels"].to(self.device).long()
        self.generator.set_state(tensors["rng"])
        self.iteration = int(meta["iteration"])
        self.seconds = float(meta["seconds"])
        self.scheduler.last_epoch = int(meta["scheduler_last_epoch"])
        lr = self.config.lr * lr_factor(self.config, self.scheduler.last_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def grow(self, steps: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
        """Grow ``batch`` states from the seed for ``steps`` steps (for previews) → ``(B, C, H, W)``;
        a conditional model grows one of each class (``batch`` is then ``K``)."""
        g = torch.Generator(device=self.device)
        g.manual_seed(seed)
        labels = torch.arange(self.classes, device=self.device) if self.classes else None
        if labels is not None:
            batch = self.classes
        with torch.no_grad():
            return self.model.rollout(self.seeds(batch, g), steps, g, condition=self.condition(labels))


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
    world: World | None = getattr(trainer, "world", None)
    while trainer.iteration < cfg.iters:
        stop = should_stop()
        if world is not None:  # every rank stops at the same iteration
            stop = world.any(stop)
        if stop:
            return False
        record = trainer.step()
        on_record(record)
        if trainer.iteration % cfg.checkpoint_every == 0 and trainer.iteration < cfg.iters:
            on_checkpoint(trainer)
    return True
