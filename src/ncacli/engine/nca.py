"""The NCA: perceive, update, mask; one step and the rollout loop.

A state is ``(B, C, H, W)`` float: channels 0..2 RGB (premultiplied), 3 alpha, the rest hidden.
A step is a pure function of ``(state, generator, condition)``; all randomness (the fire mask)
comes from the generator passed in, so a rollout is repeatable from the generator's state: a
``torch.Generator``, or a :class:`~ncacli.engine.counter_random.CounterRandom` whose masks are the same
on every device and in the browser page. A
conditional model (``condition_channels = K``) also reads a condition ``(B or 1, K, H or 1, W or 1)``
beside the state (see :mod:`ncacli.engine.condition`); the state itself keeps ``channels`` channels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ncacli.engine import active, fused
from ncacli.engine.counter_random import CounterRandom
from ncacli.engine.perception import LAPLACIAN, any_neighbour, feature_count, make_perception, pad
from ncacli.engine.update import make_update
from ncacli.engine.visible import ALPHA

# How a step runs (NCA.engine); every engine gives the same state from the same fire masks.
#   reference: every cell's update computed, then masked (the Distill formulation)
#   active:    the update only where it can change the state (ncacli.engine.active); the default
#   fused:     inference in one Triton kernel per step on CUDA (ncacli.engine.fused), fire masks from a
#              CounterRandom; where it cannot run (training, CPU, an unsupported model), the active step
from ncacli.names import ALIVE_FROM, ENGINES, PADDING_MODES  # noqa: E402, F401


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; saved as JSON in the model file."""

    channels: int = 16
    hidden: int = 128
    depth: int = 1
    perception: str = "sobel"
    update: str = "mlp"
    fire_rate: float = 0.5
    alive_threshold: float = 0.1
    alive_masking: bool = True
    padding_mode: str = "zeros"
    update_tanh: bool = False  # bound each update to (−1, 1) with tanh (nca-clip)
    signal_channels: int = 0  # the last K hidden channels diffuse ...
    signal_steps: int = 0  # ... this many extra steps per NCA step (morphogen gradients, nca-clip)
    condition_channels: int = 0  # K > 0: a conditional model, one channel per class (the NCAtorch review)
    perception_options: dict = field(default_factory=dict)  # keyword options of the perception (its own types)
    update_options: dict = field(default_factory=dict)  # keyword options of the update rule
    # which cells live: "alpha" (a living neighbourhood, Growing NCA) or "input" (where the fixed input's first
    # channel exceeds alive_threshold: the digit's pixels of a self-classifying NCA)
    alive_from: str = "alpha"
    architecture: str = "nca"  # what the model is: "nca", or a registered architecture in its place ("unet")
    architecture_options: dict = field(default_factory=dict)  # keyword options of that architecture (unet: width)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model keys {unknown}")
        return cls(**data)


# the keys only an NCA reads (of the model and training sections): a model of another architecture (a single-pass
# U-Net) refuses them when given and does not show them
NCA_ONLY = ("hidden", "depth", "perception", "update", "fire_rate", "alive_threshold", "alive_masking", "update_tanh",
            "signal_channels", "signal_steps", "perception_options", "update_options", "alive_from", "steps_min",
            "steps_max", "truncate_backprop", "checkpoint_steps")  # fmt: skip

Observer = Callable[[int, torch.Tensor], "torch.Tensor | None"]
# where the fire masks come from: torch's generator (None: the global one), or a counter-based one
Generator = torch.Generator | CounterRandom | None
# a condition for every step, or one that changes: step (1-based) → condition
Condition = torch.Tensor | Callable[[int], torch.Tensor] | None


def fused_generator(generator: Generator, device: torch.device) -> CounterRandom:
    """The fused kernel draws its fire masks from a counter-based hash: a CounterRandom as given, else one
    seeded by a draw from ``generator`` (so a seeded rollout is repeatable, though its masks differ from
    that generator's own)."""
    if isinstance(generator, CounterRandom):
        return generator
    dev = generator.device if generator is not None else torch.device("cpu")
    return CounterRandom(int(torch.randint(2**31, (1,), generator=generator, device=dev)))


class NCA(nn.Module):
    """A neural cellular automaton over states ``(B, C, H, W)``."""

    # it runs step by step, each step local: the page and fractal growth (the grid scaled between steps) can run it
    capabilities = frozenset({"steps"})

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.channels < 4:
            raise ValueError("an NCA needs at least 4 channels (RGBA)")
        if config.padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be 'zeros' or 'circular', not {config.padding_mode!r}")
        if config.condition_channels < 0:
            raise ValueError("condition_channels must be 0 or more")
        self.config = config
        seen = config.channels + config.condition_channels  # the perception sees state and condition
        if config.alive_from not in ALIVE_FROM:
            raise ValueError(f"alive_from must be one of {', '.join(ALIVE_FROM)}, not {config.alive_from!r}")
        if config.alive_from == "input" and not config.condition_channels:
            raise ValueError("alive_from 'input' reads the fixed input: it needs condition_channels")
        self.perceive = make_perception(config.perception, seen, config.padding_mode, config.perception_options)
        in_features = self.perceive_features = feature_count(self.perceive, seen)
        self.update = make_update(
            config.update, in_features, config.channels, config.hidden, config.depth, config.update_options
        )
        if not 0 <= config.signal_channels <= config.channels - 4:
            raise ValueError(f"signal_channels must be between 0 and {config.channels - 4} (the hidden channels)")
        lap = torch.tensor(LAPLACIAN).view(1, 1, 3, 3).repeat(max(config.signal_channels, 1), 1, 1, 1)
        self.register_buffer("laplacian", lap, persistent=False)
        self.engine = "active"  # how a step runs: one of ENGINES
        self.active_ok = active.supports(self)  # asked once: the update and the alive rule do not change
        # NHWC is several times faster for the 1×1 convolutions and the depthwise perception.
        self.to(memory_format=torch.channels_last)

    def alive(self, x: torch.Tensor) -> torch.Tensor:
        """Cells with an alpha above the threshold in their 3×3 neighbourhood: ``(B, 1, H, W)`` bool.

        The same as ``max_pool2d(alpha, 3) > threshold`` (cells beyond a zero-padded edge never count),
        computed as the threshold followed by an OR over 3×3 neighbourhoods.
        """
        with torch.no_grad():  # a mask: no gradient flows through it
            over = x[:, ALPHA : ALPHA + 1] > self.config.alive_threshold
            return any_neighbour(over, self.config.padding_mode == "circular")

    def forward(
        self, x: torch.Tensor, generator: Generator = None, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One step: ``(B, C, H, W)`` → ``(B, C, H, W)``; a conditional model needs ``condition``.

        ``self.engine`` picks how (see :data:`ENGINES`); all give the same state.
        """
        if self.engine == "fused" and isinstance(generator, CounterRandom) and self.fused_ready(condition):
            return fused.fused_step(self, x, generator)
        if self.engine != "reference" and self.active_ok:
            return active.active_step(self, x, generator, condition)
        return self.reference_step(x, generator, condition)

    def reference_step(
        self,
        x: torch.Tensor,
        generator: Generator = None,
        condition: torch.Tensor | None = None,
        fire: torch.Tensor | None = None,
        delta: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The step as the Distill model writes it: perceive and update every cell, then mask.

        ``fire`` ``(B, 1, H, W)`` bool: this step's fire mask, when already drawn from ``generator``; ``delta``:
        what gives the update of states ``x`` in :meth:`delta`'s place (classifier-free guidance's blend)."""
        cfg = self.config
        by_alpha = cfg.alive_masking and cfg.alive_from == "alpha"
        if by_alpha:
            pre = self.alive(x)
        dx = self.delta(x, condition) if delta is None else delta(x)
        if cfg.fire_rate < 1.0:
            dx = dx * (self.fire_mask(x, generator) if fire is None else fire)
        x = x + dx
        if cfg.signal_channels and cfg.signal_steps:
            x = self.diffuse(x)
        if by_alpha:
            x = x * (pre & self.alive(x))
        elif cfg.alive_masking:  # alive_from input: the input's cells, the same every step
            x = x * self.input_alive(x, condition)
        return x

    def delta(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """What the update would add to every cell of ``x`` before the fire and alive masks: ``(B, C, H, W)``."""
        dx = self.update(self.perceive(self.with_condition(x, condition)))
        return torch.tanh(dx) if self.config.update_tanh else dx

    def input_alive(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """Where the fixed input's first channel exceeds the threshold: ``(B, 1, H, W)`` bool."""
        assert condition is not None
        b, _, h, w = x.shape
        return (condition[:, :1] > self.config.alive_threshold).expand(b, 1, h, w)

    def fire_mask(self, x: torch.Tensor, generator: Generator) -> torch.Tensor:
        """The cells that update this step: ``(B, 1, H, W)`` bool, one draw from ``generator``."""
        b, _, h, w = x.shape
        if isinstance(generator, CounterRandom):
            fire = generator.uniform(b, h, w, x.device)
        else:
            fire = torch.rand(b, 1, h, w, generator=generator, device=x.device, dtype=x.dtype)
        return fire <= self.config.fire_rate

    def fused_ready(self, condition: Condition = None) -> bool:
        """Whether a step can run fused now: no gradients, no condition, and a model the fused kernel supports."""
        return not torch.is_grad_enabled() and condition is None and fused.fused_supported(self) is None

    def with_condition(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """What the perception sees: the state, and for a conditional model its condition broadcast to
        ``(B, K, H, W)`` after it."""
        k = self.config.condition_channels
        if not k:
            if condition is not None:
                raise ValueError("this model is not conditional; it takes no condition")
            return x
        if condition is None or condition.ndim != 4 or condition.shape[1] != k:
            got = "none" if condition is None else list(condition.shape)
            raise ValueError(f"a conditional model with {k} classes needs a condition (B, {k}, H, W), got {got}")
        c = condition.to(dtype=x.dtype).expand(x.shape[0], k, x.shape[2], x.shape[3])
        return torch.cat([x, c], dim=1).contiguous(memory_format=torch.channels_last)

    def diffuse(self, x: torch.Tensor) -> torch.Tensor:
        """``signal_steps`` explicit diffusion steps (u ← u + ⅛·∇²u: a positive, mass-keeping kernel) on the
        last ``signal_channels``."""
        k = self.config.signal_channels
        u = x[:, -k:]
        for _ in range(self.config.signal_steps):
            u = u + 0.125 * F.conv2d(pad(u, 1, self.config.padding_mode), self.laplacian, groups=k)
        return torch.cat([x[:, :-k], u], dim=1).contiguous(memory_format=torch.channels_last)

    def rollout(
        self,
        x: torch.Tensor,
        steps: int,
        generator: Generator = None,
        observe: Observer | None = None,
        truncate: int = 0,
        checkpoint: int = 0,
        condition: Condition = None,
    ) -> torch.Tensor:
        """Run ``steps`` steps from ``x`` ``(B, C, H, W)``.

        ``observe(step, state)`` is called after every step (1-based); if it returns a
        tensor, that replaces the state (damage mid-run, recording frames). ``condition`` is the
        condition of every step, or a function ``step → condition`` (switching class mid-run,
        a condition video).

        Training options, both leaving the result unchanged: ``truncate = K`` keeps gradients for the
        last ``K`` steps only (truncated backpropagation, the higher-resolution NCA study; the steps before
        run without a graph); ``checkpoint = N`` keeps only the state every ``N`` steps and recomputes the steps
        between during the backward pass (gradient checkpointing), with the same fire masks.
        """
        x = x.contiguous(memory_format=torch.channels_last)
        if self.engine == "fused" and self.fused_ready(condition):
            generator = fused_generator(generator, x.device)
            if observe is None:
                return fused.fused_rollout(self, x, steps, generator)
        if checkpoint and (observe is not None or callable(condition)):
            raise ValueError("a checkpointed rollout cannot be observed or change its condition step by step")
        free = max(0, steps - truncate) if truncate else 0
        if free:
            with torch.no_grad():
                x = self._steps(x, 1, free, generator, observe, condition)
        if checkpoint and torch.is_grad_enabled():
            for start in range(free + 1, steps + 1, checkpoint):
                x = self._checkpointed(x, min(checkpoint, steps - start + 1), generator, condition)
            return x
        return self._steps(x, free + 1, steps, generator, observe, condition)

    def _steps(
        self,
        x: torch.Tensor,
        first: int,
        last: int,
        generator: Generator,
        observe: Observer | None,
        condition: Condition = None,
    ) -> torch.Tensor:
        """Steps ``first..last`` (1-based, inclusive)."""
        for i in range(first, last + 1):
            c = condition(i) if callable(condition) else condition
            x = self(x, generator) if c is None else self(x, generator, c)
            if observe is not None:
                replaced = observe(i, x)
                if replaced is not None:
                    x = replaced.contiguous(memory_format=torch.channels_last)
        return x

    def _checkpointed(
        self, x: torch.Tensor, n: int, generator: Generator, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``n`` steps whose activations are recomputed in the backward pass.

        The recomputation replays the fire masks: it starts from a copy of the generator's state at
        the segment's start, and the caller's generator is moved on to where the first run left it.
        """
        from torch.utils.checkpoint import checkpoint

        if generator is None:  # the global generator: checkpoint saves and restores it itself
            return checkpoint(self._steps, x, 1, n, None, None, condition, use_reentrant=False)
        start = generator.get_state()
        end: list = []

        def segment(state: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
            if isinstance(generator, CounterRandom):
                g = CounterRandom(generator.seed)
            else:
                g = torch.Generator(device=generator.device)
            g.set_state(start)
            out = self._steps(state, 1, n, g, None, cond)
            end.append(g.get_state())
            return out

        x = checkpoint(segment, x, condition, use_reentrant=False)
        generator.set_state(end[0])
        return x

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
