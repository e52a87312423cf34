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

For perceptions whose features are linear in the neighbours (capability ``taps``: the fixed kernels, the
learned convolutions and their combination) the perception itself is computed at the active cells only,
from their gathered neighbourhoods; other perceptions are computed everywhere and their features gathered.
Above a fraction of active cells the dense reference step is faster, and is taken, with the fire mask
already drawn.
"""

from __future__ import annotations

import torch
from torch import nn

from ncacli.engine import native
from ncacli.engine.perception import FixedKernelPerception, any_neighbour
from ncacli.registry import capabilities

# The model a step runs is an ncacli.engine.nca.NCA, which imports this module: typed by its base class.
Model = nn.Module

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


def supports(model: Model) -> bool:
    """Whether the active step can run ``model``: its update says it runs on rows (``capabilities``), and its
    cells live by alpha (the cells the step skips are those no living neighbourhood reaches)."""
    cfg = model.config
    return "rows" in capabilities(model.update) and (cfg.alive_from == "alpha" or not cfg.alive_masking)


def fixed_kernel(perceive: nn.Module) -> bool:
    """Whether the perception says it is a depthwise convolution by the fixed kernels in ``weight``."""
    return "kernels" in capabilities(perceive) and isinstance(perceive, FixedKernelPerception)


def gathers(perceive: nn.Module) -> bool:
    """Whether the perception says its features are linear in the neighbours (:meth:`taps`), so that the
    active step computes them at the active cells alone."""
    return "taps" in capabilities(perceive) and callable(getattr(perceive, "taps", None))


def tap_features(perceive: nn.Module, seen: torch.Tensor, index: torch.Tensor, mode: str) -> torch.Tensor:
    """The perception's features at the cells ``index`` (flat ``b·H·W + y·W + x``) of ``seen`` ``(B, C, H, W)``
    → ``(N, C · K)``, laid out as its ``forward`` lays them out.

    For each of its :class:`~ncacli.engine.perception.Taps`, each cell's neighbours are gathered straight from
    the state, without padding the grid (``circular`` wraps their coordinates, ``zeros`` points those beyond the
    edge at an extra zero cell, appended only when some tap lies beyond it), and multiplied by the taps' matrix;
    kernels shared by every channel multiply the neighbours gathered tap by tap, ``(K, T) @ (T, N·C)``; learned
    depthwise kernels go through :mod:`ncacli.engine.native` where it is built, gathered and multiplied in one
    pass (``index`` ascending, as ``nonzero`` gives it).
    """
    b, c, h, w = seen.shape
    n = index.numel()
    rows = rows_of(seen)
    sample, cell = (index // (h * w)).view(-1, 1), index % (h * w)
    y0, x0 = (cell // w).view(-1, 1), (cell % w).view(-1, 1)
    groups = perceive.taps()
    flats, beyond = [], False
    for taps in groups:
        if taps.offsets == ((0, 0),):
            flats.append(index)
            continue
        dy, dx = _offsets(taps.offsets, index.device)
        y, x = y0 + dy, x0 + dx  # (N, T)
        if mode == "circular":
            flat = (sample * h + y % h) * w + x % w
        else:
            inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
            flat = torch.where(inside, (sample * h + y) * w + x, b * h * w)  # outside: the zero cell
            beyond = beyond or not bool(inside.all())
        flats.append((flat.t() if taps.shared is not None else flat).reshape(-1))
    if beyond:
        rows = torch.cat([rows, rows.new_zeros(1, c)])
    parts = None
    out = []
    for taps, flat in zip(groups, flats, strict=True):
        if taps.depthwise is not None and native.usable(rows, taps.depthwise):
            if parts is None:  # the cells of each sample (``index`` ascends): their neighbours' rows are its own
                parts = torch.searchsorted(index, torch.arange(b + 1, device=index.device) * (h * w))
            flat = flat.view(n, len(taps.offsets))
            features = native.depthwise_features(rows, flat, taps.depthwise, parts, b * h * w)
        elif taps.shared is not None:  # (T·N, C) tap-major → (K, N, C) → grouped per channel (N, C·K)
            k, t = taps.shared.shape
            features = taps.shared.to(rows.dtype) @ rows.index_select(0, flat).view(t, n * c)
            features = features.view(k, n, c).permute(1, 2, 0).reshape(n, c * k)
        else:
            features = rows.index_select(0, flat).view(n, len(taps.offsets) * c)
            matrix = taps.matrix()
            features = features if matrix is None else features @ matrix.to(rows.dtype)
        features = features if taps.bias is None else features + taps.bias
        out.append(features if taps.activation is None else taps.activation(features))
    return out[0] if len(out) == 1 else torch.cat(out, dim=1)


_OFFSETS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _offsets(offsets: tuple[tuple[int, int], ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The taps' offsets in y and in x, ``(1, T)`` each (made once per tuple and device)."""
    key = (offsets, device)
    if key not in _OFFSETS:
        pairs = torch.tensor(offsets, device=device)
        _OFFSETS[key] = (pairs[:, 0].view(1, -1), pairs[:, 1].view(1, -1))
    return _OFFSETS[key]


def active_step(model: Model, x: torch.Tensor, generator, condition: torch.Tensor | None) -> torch.Tensor:
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
    if gathers(model.perceive):
        features = tap_features(model.perceive, seen, index, cfg.padding_mode)
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
