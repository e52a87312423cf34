"""Fractal growth (the Fun with NCA report): the rollout goes on while the grid is scaled up every few steps,
so the rule draws its pattern again at each scale.

Every channel of the state, hidden ones included, is upsampled by ``factor`` after steps ``every``,
``2·every``, …, ``times·every``; the rollout then goes on at the new size until ``steps`` steps in all (so
``steps`` must be more than ``times·every``). ``nearest`` copies each cell into a ``factor × factor`` block
(exact for an integer factor); ``bilinear`` blends neighbours. A factor need not be an integer: each side
becomes ``round(side · factor)``. A condition with a spatial extent (a condition map or video) is upsampled
to the grid by ``nearest``, a one-hot class ``(B, K, 1, 1)`` broadcasts as before; alive masking keeps
working because it is computed from the state.

Memory: :func:`peak_bytes` is a rollout's peak at a grid, from the model's per-cell tensors times a margin
measured on the CPU; :func:`ncacli.bench.system.available_memory` is what the device has free.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

ZOOM_MODES = ("nearest", "bilinear")
# A rollout's peak over the floats per cell of :func:`peak_bytes` (state in and out, dx, perception, hidden),
# measured as VmHWM above the resident memory before 3 steps on a 576×576 grid with every cell alive, on the
# 2-core CPU, torch 2.14: 1.04-1.28 over sobel models of 16 or 32 channels and hidden 64-256, on both the
# active and the reference engines. 1.5 leaves room for the allocator.
PEAK_MARGIN = 1.5
# The largest grid a step is timed at before a zoomed rollout (see step_cost): a few steps of 512 × 512.
PROBE_CELLS = 512 * 512


class ZoomError(ValueError):
    """A zoom setting that cannot run: ``field`` names it (``factor``, ``every``, ``times``, ``mode``, ``steps``)."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"zoom {field}={value}: {reason}")
        self.field, self.value, self.reason = field, value, reason


@dataclass(frozen=True)
class Zoom:
    """Upsample the state by ``factor`` (> 1) after every ``every`` steps, ``times`` times, by ``mode``."""

    factor: float = 2.0
    every: int = 64
    times: int = 1
    mode: str = "nearest"

    def __post_init__(self) -> None:
        if not math.isfinite(self.factor) or self.factor <= 1:
            raise ZoomError("factor", f"{self.factor:g}", "the grid must grow; give a factor above 1, like 2")
        if self.every < 1:
            raise ZoomError("every", self.every, "zoom after every N steps, N at least 1")
        if self.times < 1:
            raise ZoomError("times", self.times, "zoom at least once (leave the zoom out to grow at one size)")
        if self.mode not in ZOOM_MODES:
            raise ZoomError("mode", self.mode, f"choose {' or '.join(ZOOM_MODES)}")

    def check(self, steps: int) -> None:
        """Refuse a rollout of ``steps`` that ends before the last zoom has had a step at its size."""
        last = self.times * self.every
        if steps <= last:
            raise ZoomError(
                "steps",
                steps,
                f"{self.times} zoom(s) every {self.every} steps end at step {last}; run more than {last} steps",
            )

    def at(self) -> list[int]:
        """The steps after which the grid is scaled: ``every, 2·every, …, times·every``."""
        return [self.every * j for j in range(1, self.times + 1)]

    def grow(self, side: int) -> int:
        """One side after one zoom."""
        return side * int(self.factor) if float(self.factor).is_integer() else max(side + 1, round(side * self.factor))

    def grids(self, h: int, w: int, limit: int | None = None) -> list[tuple[int, int]]:
        """The grid before the first zoom and after each one; stops early, after the first grid of more than
        ``limit`` cells (a huge ``times`` is refused without counting to it)."""
        out = [(h, w)]
        for _ in range(self.times):
            h, w = self.grow(h), self.grow(w)
            out.append((h, w))
            if limit is not None and h * w > limit:
                break
        return out


def resize_nearest(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, C, H, W)`` (float or bool) → ``(B, C, *size)`` by nearest neighbour (each cell's centre);
    a tensor with ``H = W = 1`` (broadcast over the grid) or already of ``size`` is returned as it is."""
    if tuple(t.shape[-2:]) in ((1, 1), tuple(size)):
        return t
    if t.dtype == torch.bool:
        return F.interpolate(t.float(), size=size, mode="nearest-exact") > 0.5
    return F.interpolate(t, size=size, mode="nearest-exact")


def zoom_state(x: torch.Tensor, factor: float, mode: str = "nearest") -> torch.Tensor:
    """Every channel of ``x`` ``(B, C, H, W)`` upsampled → ``(B, C, H', W')``, each side ``H·factor`` (an
    integer factor) or ``round(H·factor)``. ``nearest``: each cell copied into a block; ``bilinear``: blended
    between cell centres (``align_corners=False``)."""
    zoom = Zoom(factor, 1, 1, mode)
    size = (zoom.grow(x.shape[-2]), zoom.grow(x.shape[-1]))
    if mode == "nearest":
        return resize_nearest(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def zoom_rollout(
    nca,
    x: torch.Tensor,
    steps: int,
    zoom: Zoom,
    generator=None,
    observe: Callable[[int, torch.Tensor], torch.Tensor | None] | None = None,
    condition: torch.Tensor | Callable[[int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``nca.rollout`` of ``steps`` steps from ``x`` ``(B, C, H, W)`` with the state zoomed after each of
    :meth:`Zoom.at` → the state at the last grid. ``observe(step, state)`` sees every step (1-based over the
    whole rollout) before that step's zoom; a condition, fixed or ``step → condition``, is given to each step
    at the grid's size."""
    zoom.check(steps)
    done = 0
    for end in [*zoom.at(), steps]:
        first = done
        size = tuple(x.shape[-2:])
        if callable(condition):
            cond = lambda i, first=first, size=size: resize_nearest(condition(first + i), size)  # noqa: E731
        else:
            cond = None if condition is None else resize_nearest(condition, size)
        seen = None if observe is None else (lambda i, s, first=first: observe(first + i, s))
        x = nca.rollout(x, end - done, generator, seen, condition=cond)
        done = end
        if done < steps:
            x = zoom_state(x, zoom.factor, zoom.mode)
    return x


# -- what a zoomed rollout costs -----------------------------------------------------------------------------


def peak_bytes(nca, batch: int, grid: tuple[int, int]) -> int:
    """A rollout's peak memory at ``grid`` for ``batch`` samples: per cell the state in and out and its
    update (3·C floats), the perception ((C + K)·features) and the hidden layers (hidden·depth), times
    :data:`PEAK_MARGIN`."""
    cfg = nca.config
    floats = 3 * cfg.channels + nca.perceive_features + cfg.hidden * cfg.depth
    return int(PEAK_MARGIN * 4 * floats * batch * grid[0] * grid[1])


def step_seconds(nca, x: torch.Tensor, condition: torch.Tensor | None = None, steps: int = 7) -> float:
    """The time of one step of one sample at ``x``'s grid with every cell alive (so an upper bound for a
    pattern that fills less of the grid): the median of ``steps`` steps timed one by one after one to warm up
    (a median, as other processes on the machine stall a step now and then). ``x`` is left as it was; the
    fire masks come from a generator of their own."""
    probe = x[:1].clone()
    probe[:, 3] = 1.0
    cond = None if condition is None else resize_nearest(condition[:1], tuple(x.shape[-2:]))
    g = torch.Generator(device=x.device).manual_seed(0)
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda device: None)
    times = []
    with torch.no_grad():
        probe = nca.rollout(probe, 1, g, condition=cond)
        for _ in range(steps):
            sync(x.device)
            start = time.perf_counter()
            probe = nca.rollout(probe, 1, g, condition=cond)
            sync(x.device)
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def step_cost(
    nca, x: torch.Tensor, grids: list[tuple[int, int]], condition: torch.Tensor | None = None
) -> tuple[float, float]:
    """What a step of one sample costs, ``(seconds a step, seconds a cell)``, from :func:`step_seconds` at the
    first of ``grids`` (``x``'s) and at the largest of them up to :data:`PROBE_CELLS` cells: a step's fixed cost
    (launching its operations) dominates a small grid, and a cell costs more on a grid that outgrows the
    caches, so the time is extrapolated along the line through both."""
    small = x[:1]
    c0 = small.shape[-2] * small.shape[-1]
    t0 = step_seconds(nca, small, condition)
    fitting = [g for g in grids[1:] if g[0] * g[1] <= PROBE_CELLS]
    if not fitting:
        return 0.0, t0 / c0
    size = fitting[-1]
    t1, c1 = step_seconds(nca, resize_nearest(small, size), condition, steps=3), size[0] * size[1]
    per_cell = max((t1 - t0) / (c1 - c0), 0.0) if t1 > t0 else t1 / c1
    return max(t0 - per_cell * c0, 0.0), per_cell


def rollout_seconds(
    zoom: Zoom, steps: int, grids: list[tuple[int, int]], batch: int, cost: tuple[float, float]
) -> float:
    """The time of a zoomed rollout of ``batch`` samples, each step ``cost[0] + cost[1] · cells``."""
    bounds = [0, *zoom.at(), steps]
    return sum((bounds[j + 1] - bounds[j]) * (cost[0] + cost[1] * h * w * batch) for j, (h, w) in enumerate(grids))


# -- frames of a zoomed rollout ------------------------------------------------------------------------------


def fixed_display(
    frame: Callable[[torch.Tensor, torch.Tensor | None, int], np.ndarray], scale: int, grid: tuple[int, int]
) -> Callable[[torch.Tensor, torch.Tensor | None, int], np.ndarray]:
    """A task's ``frame(states, condition, scale)`` made to keep one display size, ``grid × scale`` pixels
    (``grid`` the first): a grid that has grown is drawn with fewer pixels a cell, an integer scale where it
    fits, then area-averaged (or repeated) to the display size, so the pattern stays the same width on screen
    while its cells get finer."""
    height, width = grid[0] * scale, grid[1] * scale

    def show(states: torch.Tensor, condition: torch.Tensor | None, _scale: int) -> np.ndarray:
        h, w = states.shape[-2:]
        pixels = frame(states, condition, max(1, min(height // h, width // w)))
        if pixels.shape[:2] == (height, width):
            return pixels
        t = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].float()
        t = F.interpolate(t, size=(height, width), mode="area")
        return (t[0].permute(1, 2, 0).numpy() + 0.5).clip(0, 255).astype(np.uint8)

    return show
