"""Training one model on several processes launched by ``torchrun`` (data parallel).

``torchrun --nproc_per_node N -m ncacli train ...`` starts N processes and sets ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each; :meth:`World.from_env` reads them, and is
None without them: training then runs exactly as it always has. Under torchrun even ``N = 1`` takes the
distributed path (a process group of one), and gives the plain run's weights bit for bit.

- Process group: nccl on CUDA (each process on ``cuda:LOCAL_RANK``), gloo otherwise.
- Each process (rank) holds ``pool_size / N`` pool samples, ``[rank · pool_size/N, (rank+1) · pool_size/N)``
  of the whole pool, and trains on ``batch / N`` of them per iteration (:func:`shard_of`): the global batch
  is the config's. Each rank runs the Distill recipe on its share: its worst sample is replaced by a seed,
  and the damaged (regenerating) and switched (conditional) samples are divided between the ranks.
- Each rank draws from its own generator, seeded from ``(seed, rank)``; rank 0's seed is ``seed`` itself,
  so rank 0 of a one-process run draws exactly what a plain run draws. The rollout length is rank 0's.
- Gradients are averaged by one explicit all-reduce per dtype after ``backward`` (:meth:`World.average_gradients`),
  before the per-parameter normalisation, so every rank takes the same Adam step. Not DistributedDataParallel:
  the model's ``forward`` is one CA step, called in a loop by ``rollout`` (with truncation and checkpointing),
  so DDP would need a wrapper module around the whole rollout; the models are small (thousands of parameters),
  so overlapping communication with the backward pass gains nothing; and one all-reduce of the finished
  gradients leaves nothing to doubt about ``N = 1`` being the plain run.
- The logged loss is the mean over ranks (the other terms a multi-term objective logs are rank 0's); a NaN or
  infinite loss on any rank stops every rank at the same iteration, as does Ctrl-C (:meth:`World.any`).
- Rank 0 alone writes (``run_dir.DistributedRunDir``); the resume file holds the whole pool, gathered in rank
  order, and every rank's generator state (``rng`` for rank 0, ``rng.R`` for rank R), with ``world_size``.

torch is imported inside the functions: the CLI imports this module, and ``nca --help`` should stay quick.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ncacli.errors import NcaError, UsageError

if TYPE_CHECKING:
    import torch

    from ncacli.config import Config

ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_MIX = 0x9E3779B97F4A7C15  # the 64-bit golden ratio: spreads the ranks' seeds apart
QUIET_EXIT_DELAY_S = 3.0  # how long a rank that leaves an error to its node's local rank 0 waits before exiting

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class World:
    """This process's place among the ``size`` processes torchrun started."""

    rank: int
    size: int
    local_rank: int

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> World | None:
        """The world torchrun describes in the environment, or None when this process was not started by it."""
        env = os.environ if environ is None else environ
        missing = [key for key in ENV if not env.get(key)]
        if missing:
            if env.get("WORLD_SIZE", "1").strip() not in ("", "0", "1"):
                raise NcaError(
                    f"WORLD_SIZE is {env['WORLD_SIZE']} but {', '.join(missing)} not set: launch several "
                    "processes with `torchrun --nproc_per_node N -m ncacli train ...`"
                )
            return None
        try:
            rank, size, local_rank = (int(env[key]) for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
        except ValueError:
            raise NcaError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (as torchrun sets them)") from None
        if not 0 <= rank < size:
            raise NcaError(f"RANK {rank} is not below WORLD_SIZE {size}")
        return cls(rank, size, local_rank)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the run directory and prints."""
        return self.rank == 0

    # ---- process group -------------------------------------------------------------------------------

    def init(self, device: torch.device) -> torch.device:
        """Join the process group: nccl with this process on ``cuda:LOCAL_RANK``, else gloo → this rank's device."""
        # torch.optim imports torch._dynamo on first use, and a torch._dynamo imported after the process group
        # exists keeps references to it: the group then outlives destroy_process_group, and its gloo threads
        # abort the interpreter at exit ("terminate called without an active exception"). Import it first.
        import torch
        import torch._dynamo  # noqa: F401
        import torch.distributed as dist

        if device.type == "cuda":
            if self.local_rank >= torch.cuda.device_count():
                raise NcaError(
                    f"LOCAL_RANK {self.local_rank} needs GPU {self.local_rank}, but {torch.cuda.device_count()} "
                    "are visible: start at most that many processes a node"
                )
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", rank=self.rank, world_size=self.size, device_id=device)
        else:
            dist.init_process_group("gloo", rank=self.rank, world_size=self.size)
        return device

    @staticmethod
    def close() -> None:
        """Leave the process group (when this process joined one)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()

    # ---- collectives (every rank must call each one, in the same order) -----------------------------

    @staticmethod
    def _comm_device() -> torch.device:
        """Where the backend's tensors live: this rank's GPU for nccl, the CPU for gloo."""
        import torch
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (the same answer on all of them)."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean_loss(self, loss: torch.Tensor) -> float:
        """The mean of a scalar over the ranks; NaN on every rank when it is NaN or infinite on any."""
        import torch
        import torch.distributed as dist

        value = loss.detach().to(self._comm_device(), torch.float64).reshape(1)
        t = torch.cat([value, (~torch.isfinite(value)).to(torch.float64)])
        dist.all_reduce(t)
        return float("nan") if t[1].item() > 0 else float(t[0].item() / self.size)

    @staticmethod
    def barrier() -> None:
        """Wait until every rank is here."""
        import torch.distributed as dist

        dist.barrier()

    def broadcast_int(self, value: int) -> int:
        """Rank 0's ``value`` on every rank."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.int64, device=self._comm_device())
        dist.broadcast(t, src=0)
        return int(t.item())

    def broadcast_(self, tensors: Iterable[torch.Tensor]) -> None:
        """Overwrite ``tensors`` (in place) with rank 0's: the initial weights and buffers."""
        import torch
        import torch.distributed as dist

        comm = self._comm_device()
        with torch.no_grad():
            for t in tensors:
                buffer = t.detach().to(comm).contiguous()
                dist.broadcast(buffer, src=0)
                t.copy_(buffer)

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over the ranks: one all-reduce per dtype of every gradient,
        flattened, with a flag per parameter so a gradient that is None on every rank stays None."""
        import torch
        import torch.distributed as dist

        comm = self._comm_device()
        groups: dict[torch.dtype, list[torch.nn.Parameter]] = {}
        for p in parameters:
            if p.requires_grad:
                groups.setdefault(p.dtype, []).append(p)
        with torch.no_grad():
            for params in groups.values():
                pieces = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(comm) for p in params]
                flags = torch.tensor([p.grad is not None for p in params], dtype=params[0].dtype, device=comm)
                flat = torch.cat([*pieces, flags])
                dist.all_reduce(flat)
                flat /= self.size
                offset = 0
                for p in params:
                    n = p.numel()
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    p.grad.copy_(flat[offset : offset + n].view(p.shape))
                    offset += n
                for p, flag in zip(params, flat[offset:].tolist(), strict=True):
                    if flag == 0:  # no rank had a gradient for it
                        p.grad = None

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (all of one shape), in rank order, on rank 0; ``[tensor]`` on the others."""
        import torch.distributed as dist

        comm = self._comm_device()
        local = tensor.detach().to(comm).contiguous()
        parts = [local.new_empty(local.shape) for _ in range(self.size)] if self.is_main else None
        dist.gather(local, parts, dst=0)
        if parts is None:
            return [tensor]
        return [part.to(tensor.device) for part in parts]

    # ---- resume state ------------------------------------------------------------------------------

    def gather_resume(self, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
        """Turn this rank's resume state into the whole run's, on rank 0 (in place): the pool of every rank
        in rank order, each rank's generator (``rng``, ``rng.1``, ...) and ``world_size``."""
        import torch

        for key in ("pool", "pool_labels"):
            if key in tensors:
                tensors[key] = torch.cat(self.gather(tensors[key]))
        for rank, state in enumerate(self.gather(tensors["rng"])):
            tensors["rng" if rank == 0 else f"rng.{rank}"] = state
        meta["world_size"] = str(self.size)

    def local_resume(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This rank's part of a resume state written by :meth:`gather_resume`: its pool rows, its generator."""
        out = {k: v for k, v in tensors.items() if not k.startswith("rng.")}
        for key in ("pool", "pool_labels"):
            if key in tensors:
                n = tensors[key].shape[0] // self.size
                out[key] = tensors[key][self.rank * n : (self.rank + 1) * n]
        if self.rank:
            out["rng"] = tensors[f"rng.{self.rank}"]
        return out


@dataclass(frozen=True)
class Shard:
    """What one rank trains on: its batch, its rows of the pool, its share of damaged and switched samples."""

    batch: int
    pool_size: int
    pool_start: int
    damage_count: int
    mutation_count: int


def shard_of(config: Config, world: World | None) -> Shard:
    """This rank's :class:`Shard`: the whole config without torchrun; a clear error when it does not divide."""
    if world is None:
        return Shard(config.batch, config.pool_size, 0, config.damage_count, config.mutation_count)
    n = world.size
    uses_pool = config.mode != "growing"
    for key, value in (("batch", config.batch), ("pool_size", config.pool_size if uses_pool else 0)):
        if value % n:
            raise UsageError(f"{key} {value} does not divide between the {n} processes: make it a multiple of {n}")

    def share(count: int, rank: int) -> int:
        return count // n + (rank < count % n)

    batch = config.batch // n
    damaged = config.damage_count if config.mode == "regenerating" else 0
    mutated = config.mutation_count if config.classes() and uses_pool else 0
    if uses_pool and share(damaged, 0) + share(mutated, 0) >= batch:
        raise UsageError(
            f"batch {config.batch} over {n} processes leaves {batch} samples each, too few for a fresh seed plus "
            f"{share(damaged, 0) + share(mutated, 0)} damaged or switched: raise batch"
        )
    pool = config.pool_size // n
    return Shard(
        batch, pool, world.rank * pool, share(config.damage_count, world.rank), share(config.mutation_count, world.rank)
    )


def generator_seed(seed: int, world: World | None) -> int:
    """The seed of this rank's generator: ``seed`` itself on rank 0 (and without torchrun), spread apart otherwise."""
    if world is None or world.rank == 0:
        return seed
    return (seed + world.rank * _MIX) % 2**64


def check_resume(meta: dict[str, str], world: World | None, where: str) -> None:
    """Refuse to resume a run with another number of processes than it was trained with."""
    saved = int(meta.get("world_size", "1"))
    running = world.size if world is not None else 1
    if saved != running:
        raise NcaError(
            f"{where}: the run was trained by {saved} process{'es' if saved > 1 else ''}, not {running}; "
            f"resume it with `{train_command(saved)} --resume {where}`"
        )


def train_command(world: World | int | None) -> str:
    """How to start training with as many processes as ``world`` (a world, a count, or None for one)."""
    size = world.size if isinstance(world, World) else world or 1
    return f"torchrun --nproc_per_node {size} -m ncacli train" if size > 1 else "nca train"


def command(fn: F) -> F:
    """A CLI verb that may run under torchrun: the process group is left at the end, errors included.

    The one-line errors (:class:`NcaError`) every rank meets alike are shown once a node, by its local rank 0;
    the other ranks wait a moment, so that it reports and exits first (torchrun then stops them), and exit with
    the same code without a word. Other exceptions are reported by every rank that meets them.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        world = World.from_env()
        if world is None:
            return fn(*args, **kwargs)
        try:
            return fn(*args, **kwargs)
        except NcaError as exc:
            if world.local_rank == 0:
                raise
            World.close()
            time.sleep(QUIET_EXIT_DELAY_S)
            raise SystemExit(exc.exit_code) from None
        finally:
            World.close()

    return wrapper  # type: ignore[return-value]
