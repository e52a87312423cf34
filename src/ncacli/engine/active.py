"""The active-cell step: the update computed only at the cells whose state it can change.

The reference step (:meth:`ncacli.engine.NCA.reference_step`) runs the update at every cell, discards it
where the cell does not fire, and, with alive masking, zeroes every cell that was not alive before the step
(``x · (pre & post)``), whatever its update was. A dead cell's update matters in one way only: its new alpha
enters the *post* mask of its living neighbours. So the *active* cells are those that fire and lie within
one cell of a living one (every firing cell with signal diffusion, which spreads any cell's channels). This
step draws the same fire mask, gathers the active cells' features as rows ``(N, F)``, runs the update on
those rows and adds the result back: the same state and the same gradients, up to the order of
floating-point sums. A grown lizard keeps about a third of the Distill grid alive, and half of its cells
fire: the update runs on about a fifth of the grid.

For fixed-kernel perceptions (``sobel``, ``sobel_laplacian``, ``sobel5``, ``sobel_diagonal``) the
perception itself is computed at the active cells only, from their gathered ``k × k`` neighbourhoods;
other perceptions are computed everywhere and their features gathered. Above a fraction of active cells
the dense reference step is faster, and is taken, with the fire mask already drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ncacli.engine.perception import FixedKernelPerception, any_neighbour
from ncacli.registry import capabilities

if TYPE_CHECKING:
    from ncacli.engine.nca import NCA

# Above this fraction of active cells the reference step is faster (measured on a 2-core CPU, Distill
# model, 8 × 72 × 72): gathering neighbourhoods costs more than the update it saves. Backward passes gain
# more from the gather, so training keeps it longer.
DENSE_INFERENCE = 0.3
DENSE_TRAINING = 0.6


def rows_of(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B·H·W, C)``, one row per cell; a view when ``x`` is channels-last."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def from_rows(rows: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    """``(B·H·W, C)`` → ``(B, C, H, W)`` channels-last (a view)."""
    return rows.view(b, h, w, -1).permute(0, 3, 1, 2)


def supports(model: NCA) -> bool:
    """Whether the active step can run ``model``: its update says it runs on rows (``capabilities``), and its
    cells live by alpha (the cells the step skips are those no living neighbourhood reaches)."""
    cfg = model.config
    return "rows" in capabilities(model.update) and (cfg.alive_from == "alpha" or not cfg.alive_masking)


def fixed_kernel(perceive: nn.Module) -> bool:
    """Whether the perception says it is a depthwise convolution by the fixed kernels in ``weight``."""
    return "kernels" in capabilities(perceive) and isinstance(perceive, FixedKernelPerception)


def neighbourhood_features(
    perceive: FixedKernelPerception, seen: torch.Tensor, index: torch.Tensor, mode: str
) -> torch.Tensor:
    """A fixed-kernel perception at the cells ``index`` (flat ``b·H·W + y·W + x``) of ``seen`` ``(B, C, H, W)``
    → ``(N, C · K)``, grouped per channel as :class:`FixedKernelPerception` lays them out.

    Each cell's ``k × k`` neighbourhood is gathered straight from the state's rows, without padding the grid:
    ``circular`` wraps the neighbours' coordinates, ``zeros`` gathers a clamped neighbour and zeroes it.
    """
    b, c, h, w = seen.shape
    dy, dx, blocks = _tap_blocks(perceive, c)
    taps = dy.shape[1]
    sample, cell = (index // (h * w)).view(-1, 1), index % (h * w)
    y, x = (cell // w).view(-1, 1) + dy, (cell % w).view(-1, 1) + dx  # (N, T)
    if mode == "circular":
        inside = None
        y, x = y % h, x % w
    else:
        inside = ((y >= 0) & (y < h) & (x >= 0) & (x < w)).unsqueeze(-1)
        y, x = y.clamp(0, h - 1), x.clamp(0, w - 1)
    gathered = rows_of(seen).index_select(0, ((sample * h + y) * w + x).reshape(-1)).view(-1, taps, c)
    if inside is not None:
        gathered.mul_(inside)
    return gathered.view(-1, taps * c) @ blocks


def _tap_blocks(perceive: FixedKernelPerception, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The offsets ``(1, T)`` in y and x of the taps some kernel reads, and the kernels laid out block-diagonally
    over ``c`` channels, ``(T·C, C·K)`` with entry ``[t·C + c, c·K + k]`` = kernel k at tap t, so that one matrix
    product of the gathered neighbourhoods gives the features (a transpose of them costs more). The kernels are
    fixed: kept on the perception, per device, dtype and channel count."""
    weight = perceive.weight
    key = (weight.device, weight.dtype, c)
    cache = perceive.__dict__.setdefault("_tap_blocks", {})
    if key not in cache:
        half, k, count = perceive.kernel_size // 2, perceive.kernel_size, len(perceive.kernels)
        kernels = weight[:count, 0].reshape(count, -1)  # (K, k·k)
        taps = kernels.abs().sum(0).nonzero().squeeze(1)  # (T,)
        eye = torch.eye(c, dtype=weight.dtype, device=weight.device)
        blocks = torch.einsum("kt,cd->tcdk", kernels[:, taps], eye).reshape(taps.numel() * c, c * count)
        cache[key] = ((taps // k - half).view(1, -1), (taps % k - half).view(1, -1), blocks)
    return cache[key]


def active_step(model: NCA, x: torch.Tensor, generator, condition: torch.Tensor | None) -> torch.Tensor:
    """One step of ``model`` from ``x`` ``(B, C, H, W)``, equal to the reference step; see the module text."""
    cfg = model.config
    b, c, h, w = x.shape
    pre = model.alive(x) if cfg.alive_masking else None
    # A dead cell's update still counts: its new alpha can keep a living neighbour alive (the post mask
    # is read before masking), so the update runs on the ring of cells around the living ones too; with
    # signal diffusion every cell's channels reach its neighbours, so every firing cell updates.
    diffusion = bool(cfg.signal_channels and cfg.signal_steps)
    active = None if pre is None or diffusion else any_neighbour(pre, cfg.padding_mode == "circular")
    fire = None
    if cfg.fire_rate < 1.0:
        fire = model.fire_mask(x, generator)
        active = fire if active is None else active & fire
    index = None if active is None else active.reshape(-1).nonzero().squeeze(1)
    dense = DENSE_TRAINING if torch.is_grad_enabled() else DENSE_INFERENCE
    if index is None or index.numel() > dense * b * h * w:
        return model.reference_step(x, None, condition, fire)
    seen = model.with_condition(x, condition)
    if fixed_kernel(model.perceive):
        features = neighbourhood_features(model.perceive, seen, index, cfg.padding_mode)
    else:
        features = rows_of(model.perceive(seen)).index_select(0, index)
    dx = model.update.rows(features)
    if cfg.update_tanh:
        dx = torch.tanh(dx)
    rows = rows_of(x).index_add(0, index, dx.to(x.dtype))  # a new state: the only full-grid write
    x = from_rows(rows, b, h, w)
    if diffusion:
        x = model.diffuse(x)
        rows = rows_of(x)
    if pre is not None:
        # in place on the new state, as rows: a (B, 1, H, W) mask broadcast over channels-last is a slow path
        rows.mul_((pre & model.alive(x)).reshape(-1, 1))
    return x
