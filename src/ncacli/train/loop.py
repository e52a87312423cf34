"""The training loop of every NCA task: rollout, loss, backward, gradient normalisation, Adam (Distill 2020).

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
from ncacli.engine import build_model
from ncacli.errors import NonFiniteLoss
from ncacli.train.distributed import World, generator_seed, shard_of


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
    ``lr_min`` over ``iters`` iterations (nca-clip: 2e-3 → 1e-4). Either rises linearly over its first
    ``lr_warmup`` iterations.
    """
    warm = min(1.0, (iteration + 1) / config.lr_warmup) if config.lr_warmup else 1.0
    if config.lr_schedule == "cosine":
        t = min(iteration, config.iters) / max(config.iters, 1)
        lr = config.lr_min + (config.lr - config.lr_min) * 0.5 * (1.0 + math.cos(math.pi * t))
        return warm * lr / config.lr
    return warm * config.lr_gamma ** sum(m <= iteration for m in config.lr_milestones)


class Trainer:
    """Holds everything a run changes: model, optimizer, schedule, pool, generator, iteration.

    What the samples are (seeds, pool, batch, condition, loss, preview) is the task's
    (:class:`ncacli.tasks.Task`); the trainer runs the loop around it."""

    def __init__(self, config: Config, task: Any, device: torch.device, world: World | None = None) -> None:
        """``task``: the run's task, built by ``Task.from_config``. ``world``: this process's rank under
        torchrun (None without); it then trains on its :class:`~ncacli.train.distributed.Shard` of the batch
        and pool."""
        from ncacli.tasks.base import Task

        if not isinstance(task, Task):  # a target tensor (or None): the image task over it
            from ncacli.registry import TASKS

            task = TASKS.get(config.task_name(), "task").for_target(config, task, device)
        self.config = config
        self.task = task
        self.device = device
        self.world = world
        self.shard = shard_of(config, world)  # without torchrun: the config's batch, pool and counts
        self.classes = task.spec.model.condition_channels
        torch.manual_seed(config.seed)  # weight initialisation
        self.model = build_model(task.spec.model).to(device)
        if world is not None:  # the same weights on every rank
            world.broadcast_([*self.model.parameters(), *self.model.buffers()])
        self.target = getattr(task, "target", None)
        self.grid = tuple(task.spec.task.grid)
        self.seed_positions = [list(p) for p in task.spec.task.seed_positions]
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=tuple(config.adam_betas))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda it: lr_factor(config, it))
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(generator_seed(config.seed, world))
        self.pool = task.make_pool(self)
        task.prepare(config, self.generator)
        self.iteration = 0
        self.seconds = 0.0

    @property
    def spec(self):
        return self.task.spec

    def cells(self) -> int:
        """Cells one iteration's rollout steps (per step): batch × grid."""
        return self.shard.batch * self.grid[0] * self.grid[1]

    def seeds(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` seed states ``(n, C, H, W)`` (random colours come from ``generator``, else the trainer's)."""
        return self.task.seeds(n, generator or self.generator)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.task.loss(x, labels)

    def condition(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        return self.task.condition(labels)

    def batch(self) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """The batch for one iteration → ``(pool indices or None, states (B, C, H, W), labels (B,) or None)``."""
        b = self.task.batch(self)
        return b.index, b.states, b.labels

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
        try:
            loss = self.loss(out, labels).mean()
        except NonFiniteLoss as exc:  # an objective's own network (a critic) diverged: it did not step
            raise NonFiniteLoss(self.iteration + 1, exc.value, exc.what) from None
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
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        if not all(torch.isfinite(p.grad).all() for p in self.model.parameters() if p.grad is not None):
            raise NonFiniteLoss(self.iteration + 1, float("nan"))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        if self.pool is not None:
            self.pool.commit(idx, out, labels)
        self.iteration += 1
        self.seconds += time.perf_counter() - start
        return Record(self.iteration, value, lr, steps, self.seconds, self.task.terms())

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
        for name, t in self.task.saved_tensors().items():
            tensors[name] = t
        tensors.update(self.task.training_state())  # an objective's own networks (a critic): not in the model file
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
        self.task.load_training_state(tensors)
        self.iteration = int(meta["iteration"])
        self.seconds = float(meta["seconds"])
        self.scheduler.last_epoch = int(meta["scheduler_last_epoch"])
        lr = self.config.lr * lr_factor(self.config, self.scheduler.last_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def preview(self) -> bytes:
        return self.task.preview(self)


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
