"""A fused Triton inference kernel for one NCA step: perceive → MLP → tanh → fire mask → add → alive mask.

:meth:`~ncacli.engine.nca.NCA.reference_step` runs a depthwise convolution, two 1×1 convolutions, a random
draw and two max-pools, each reading and writing a full tensor: for the Distill model (16 channels, 48 features,
128 hidden) every cell's 16 state values pass through 48 feature and 128 hidden values in memory. The fused step
reads the state once and writes it once (the post-alive pass below rewrites only the cells it kills); the features
and hidden activations stay in registers.

Two kernels per step:

1. ``_step_kernel``: one program per tile of ``BLOCK`` consecutive cells (flat ``b·H·W + y·W + x``, so a tile is
   a run of cells along rows). For each of the 9 taps it loads the tile's neighbours ``(BLOCK, C)`` (padded to a
   power of two with masks; channels-last memory makes each load contiguous) and accumulates the ``K`` features
   ``(BLOCK, K, C)`` with the model's fixed ``3 × 3`` kernels; then ``features @ W1`` (``tl.dot``), ReLU,
   ``@ W2``, tanh, the fire mask from the in-kernel ``lowbias32`` hash (the same bits as
   :class:`~ncacli.engine.counter_random.CounterRandom`), the add, and the *pre* alive mask (3×3 max of the input
   alpha > threshold, from the neighbours already loaded). It writes ``x + dx`` (zeroed where not pre-alive) and
   one byte of flags per cell: bit 0 "the new alpha is over the threshold", bit 1 "pre-alive".
2. ``_post_kernel``: the *post* alive mask needs the **updated** alpha of the 8 neighbours, which other programs
   compute, and Triton has no grid-wide barrier; so a second launch reads the 3×3 flags (bit 0) and zeroes the
   cells that were pre-alive but are not post-alive (``x · (pre & post)``, as the reference). It reads the flag
   bytes, not the new state, so no program reads an alpha another one is zeroing; it writes only the cells it
   kills.

Without alive masking the second kernel is skipped. :func:`fused_rollout` runs steps with two ping-pong buffers
and, on CUDA, replays the steps from a captured CUDA graph (no host launch overhead per step).

Inference only: no gradients flow through the kernels. Triton is imported lazily; on a CPU the kernels run
through Triton's interpreter (``TRITON_INTERPRET=1`` set before triton is imported).
"""

from __future__ import annotations

import importlib.util
import math
import os
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ncacli.engine import active
from ncacli.engine.counter_random import MASK, CounterRandom, mix
from ncacli.registry import capabilities

# The model a step runs is an ncacli.engine.nca.NCA, which imports this module: typed by its base class.
Model = nn.Module

DEFAULT_BLOCK = 64  # cells per program
NUM_WARPS = 4
GRAPH_MIN_STEPS = 16  # fused_rollout captures a CUDA graph from this many steps on (cuda_graph=None)
GRAPH_CHUNK = 64  # at most this many steps per captured graph

# Bound by _load(): triton.language and the jitted kernels (the module imports without triton).
tl: Any = None
_mix: Any = None
_tap: Any = None
_STEP: Any = None
_POST: Any = None


def triton_available() -> bool:
    """Whether triton is installed (found without importing it)."""
    return importlib.util.find_spec("triton") is not None


def _interpreting() -> bool:
    """Whether Triton runs kernels through its CPU interpreter (``TRITON_INTERPRET``)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def fused_supported(model: Model) -> str | None:
    """``None`` when :func:`fused_step` can run ``model``, else a short reason.

    Supported: a fixed 3×3-kernel perception (``sobel``, ``sobel_laplacian``, ``sobel_diagonal``), a plain MLP
    update with one hidden layer, no signal diffusion, no condition, float32 parameters; triton importable and the
    model on a CUDA device (or Triton's interpreter on).
    """
    cfg = model.config
    if not active.fixed_kernel(model.perceive):
        return f"perception {cfg.perception!r} is not a fixed 3×3 kernel"
    if model.perceive.kernel_size != 3:
        k = model.perceive.kernel_size
        return f"perception {cfg.perception!r} has a {k}×{k} kernel, not 3×3"
    layers = getattr(model.update, "layers", None)
    if "fused" not in capabilities(model.update) or not callable(layers):
        options = f" with options {cfg.update_options}" if cfg.update_options else ""
        return f"update {cfg.update!r}{options} is not the plain ReLU MLP"
    convs = [conv for conv, _, _ in layers()]
    if len(convs) != 2:
        return f"update depth {len(convs) - 1}: only one hidden layer is fused"
    if cfg.signal_channels and cfg.signal_steps:
        return "signal diffusion is not fused"
    if cfg.condition_channels:
        return "conditional models are not fused"
    if cfg.alive_masking and cfg.alive_from != "alpha":
        return "cells that live by the input are not fused"
    dtypes = {p.dtype for p in model.update.parameters()}
    if dtypes != {torch.float32}:
        return f"parameters are {', '.join(sorted(str(d).removeprefix('torch.') for d in dtypes))}, not float32"
    if not triton_available():
        return "triton is not installed"
    device = next(model.update.parameters()).device
    if device.type != "cuda" and not _interpreting():
        return f"the model is on {device.type}: Triton needs CUDA (or TRITON_INTERPRET=1)"
    return None


def _pow2(n: int, least: int = 1) -> int:
    return max(least, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


@dataclass(frozen=True)
class _Prepared:
    """The model's weights laid out for the kernel, zero-padded to powers of two.

    ``kern`` ``(9, KP)``: tap ``t = 3·(dy+1) + (dx+1)`` → the ``K`` kernel values; ``w1`` ``(KP·CP, HP)``: row
    ``k·CP + c`` is feature ``c·K + k`` of the first layer; ``b1`` ``(HP,)``; ``w2`` ``(HP, CP)``; ``b2`` ``(CP,)``.
    """

    kern: torch.Tensor
    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    channels: int
    cp: int
    kp: int
    hp: int
    circular: bool
    fire: bool
    alive: bool
    tanh: bool
    fire_rate: float
    threshold: float


def _layers(model: Model) -> tuple[nn.Conv2d, nn.Conv2d]:
    first, last = [conv for conv, _, _ in model.update.layers()]
    return first, last


def _prepare(model: Model, device: torch.device) -> _Prepared:
    cfg = model.config
    c = cfg.channels
    k = model.perceive.features_per_channel
    first, last = _layers(model)
    hidden = first.out_channels
    cp, kp, hp = _pow2(c, 16), _pow2(k), _pow2(hidden, 16)
    with torch.no_grad():
        kernels = model.perceive.weight[:k, 0].reshape(k, 9).to(device=device, dtype=torch.float32)
        kern = torch.zeros(9, kp, device=device)
        kern[:, :k] = kernels.t()
        w = first.weight.detach().reshape(hidden, c, k).permute(2, 1, 0)  # (K, C, hidden)
        w1 = torch.zeros(kp, cp, hp, device=device)
        w1[:k, :c, :hidden] = w
        b1 = torch.zeros(hp, device=device)
        b1[:hidden] = first.bias.detach()
        w2 = torch.zeros(hp, cp, device=device)
        w2[:hidden, :c] = last.weight.detach().reshape(c, hidden).t()
        b2 = torch.zeros(cp, device=device)
        b2[:c] = last.bias.detach()
    return _Prepared(
        kern=kern.contiguous(),
        w1=w1.reshape(kp * cp, hp).contiguous(),
        b1=b1,
        w2=w2.contiguous(),
        b2=b2,
        channels=c,
        cp=cp,
        kp=kp,
        hp=hp,
        circular=cfg.padding_mode == "circular",
        fire=cfg.fire_rate < 1.0,
        alive=cfg.alive_masking,
        tanh=cfg.update_tanh,
        fire_rate=float(cfg.fire_rate),
        threshold=float(cfg.alive_threshold),
    )


# model → (what its weights were, the prepared weights): re-laid out only when a weight changes (in-place changes,
# optimiser steps and load_state_dict included, bump a tensor's version) or moves
_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, _Prepared]] = weakref.WeakKeyDictionary()


def _prepared(model: Model, device: torch.device) -> _Prepared:
    first, last = _layers(model)
    tensors = (model.perceive.weight, first.weight, first.bias, last.weight, last.bias)
    signature = (str(device), model.config, tuple((t.data_ptr(), t._version) for t in tensors))
    cached = _CACHE.get(model)
    if cached is None or cached[0] != signature:
        cached = (signature, _prepare(model, device))
        _CACHE[model] = cached
    return cached[1]


def _keys(generator: CounterRandom | None, steps: int, fire: bool) -> list[int]:
    """The next ``steps`` fire-mask keys ``mix(mix(seed) ^ call)`` (uint32 values), moving ``generator`` on by
    ``steps`` calls; ``[0] * steps`` when the model draws no fire mask (the reference draws nothing then)."""
    if not fire:
        return [0] * steps
    if not isinstance(generator, CounterRandom):
        raise TypeError("the fused step draws its fire mask in-kernel: it needs a CounterRandom generator")
    seed = mix(generator.seed)
    keys = [mix(seed ^ ((generator.calls + i) & MASK)) for i in range(steps)]
    generator.calls += steps
    return keys


def _signed(key: int) -> int:
    """A uint32 as the int32 with its bits (a kernel argument of one type whatever its value)."""
    return key - (1 << 32) if key >= 1 << 31 else key


def _check(model: Model, x: torch.Tensor) -> None:
    reason = fused_supported(model)
    if reason is not None:
        raise ValueError(f"the fused step cannot run this model: {reason}")
    c = model.config.channels
    if x.ndim != 4 or x.shape[1] != c:
        raise ValueError(f"expected a state (B, {c}, H, W), got {list(x.shape)}")
    if x.dtype != torch.float32:
        raise ValueError(f"the fused step runs float32 states, not {x.dtype}")
    if x.numel() >= 2**31:
        raise ValueError("the fused step indexes with 32-bit offsets: the state must have fewer than 2**31 values")


def _launch(
    prep: _Prepared,
    src: torch.Tensor,
    dst: torch.Tensor,
    flags: torch.Tensor,
    key: int,
    block: int,
    precision: str,
    keys: torch.Tensor | None = None,
    key_index: int = 0,
) -> None:
    """One step ``src`` → ``dst`` (both ``(B, C, H, W)`` float32, any strides; ``dst`` must not overlap ``src``).

    ``flags`` ``(B·H·W,)`` int8 scratch. The fire-mask key is ``key`` (a kernel argument), or with ``keys``
    (int64 on the device, as a CUDA graph needs: its arguments are frozen at capture) ``keys[key_index]``."""
    _load()
    b, c, h, w = src.shape
    n = b * h * w
    grid = (_cdiv(n, block),)
    common = dict(C=c, CP=prep.cp, BLOCK=block, CIRCULAR=prep.circular)
    _STEP[grid](
        src,
        dst,
        flags,
        prep.kern,
        prep.w1,
        prep.b1,
        prep.w2,
        prep.b2,
        flags if keys is None else keys,
        key_index,
        _signed(key),
        n,
        h,
        w,
        *src.stride(),
        *dst.stride(),
        prep.fire_rate,
        prep.threshold,
        KP=prep.kp,
        HP=prep.hp,
        FIRE=prep.fire,
        KEY_IN_MEMORY=keys is not None,
        ALIVE=prep.alive,
        TANH=prep.tanh,
        PRECISION=precision,
        num_warps=NUM_WARPS,
        **common,
    )
    if prep.alive:
        _POST[grid](dst, flags, n, h, w, *dst.stride(), num_warps=NUM_WARPS, **common)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _buffers(x: torch.Tensor, alive: bool) -> tuple[torch.Tensor, torch.Tensor]:
    out = torch.empty_like(x, memory_format=torch.channels_last)
    b, _, h, w = x.shape
    flags = torch.empty(b * h * w if alive else 1, dtype=torch.int8, device=x.device)
    return out, flags


def fused_step(
    model: Model,
    x: torch.Tensor,
    generator: CounterRandom | None,
    *,
    block: int = DEFAULT_BLOCK,
    precision: str = "ieee",
) -> torch.Tensor:
    """One step of ``model`` from ``x`` ``(B, C, H, W)`` float32 → a new ``(B, C, H, W)`` channels-last tensor,
    equal to ``model.reference_step(x, generator)`` up to the order of float sums.

    ``generator`` is moved on by one call when the model draws a fire mask (``fire_rate < 1``), as the reference
    does; it may be ``None`` otherwise. ``block``: cells per program (a power of two, at least 16). ``precision``:
    ``tl.dot``'s ``input_precision`` on CUDA ("ieee" exact float32; "tf32" faster, about 1e-3 off).
    No gradients; nothing is synchronised (the key is a kernel argument).
    """
    _check(model, x)
    prep = _prepared(model, x.device)
    (key,) = _keys(generator, 1, prep.fire)
    out, flags = _buffers(x, prep.alive)
    with torch.no_grad():
        _launch(prep, x, out, flags, key, block, precision)
    return out


def fused_rollout(
    model: Model,
    x: torch.Tensor,
    steps: int,
    generator: CounterRandom | None,
    *,
    cuda_graph: bool | None = None,
    block: int = DEFAULT_BLOCK,
    precision: str = "ieee",
) -> torch.Tensor:
    """``steps`` fused steps from ``x`` ``(B, C, H, W)`` float32 → ``(B, C, H, W)`` channels-last (``x`` untouched),
    the state a loop of :func:`fused_step` gives.

    ``cuda_graph``: replay the steps from a captured CUDA graph (``None``: when ``x`` is on CUDA and ``steps`` is
    at least ``GRAPH_MIN_STEPS``). The graph is captured afresh on every call, so it pays for itself on long
    rollouts. The first step always runs eagerly, which also compiles the kernels before the capture.
    """
    _check(model, x)
    if steps <= 0:
        return x
    prep = _prepared(model, x.device)
    keys = _keys(generator, steps, prep.fire)
    a, flags = _buffers(x, prep.alive)
    bufs = (a, torch.empty_like(a))
    use_graph = (steps >= GRAPH_MIN_STEPS) if cuda_graph is None else cuda_graph
    with torch.no_grad():
        _launch(prep, x, bufs[0], flags, keys[0], block, precision)
        done = 1
        if use_graph and x.is_cuda and steps > 2:
            done += _graph_steps(prep, bufs, flags, keys[1:], block, precision)
        for i in range(done, steps):  # eager steps; bufs[i % 2] holds the state after step i (0-based)
            _launch(prep, bufs[(i - 1) % 2], bufs[i % 2], flags, keys[i], block, precision)
    return bufs[(steps - 1) % 2]


def _graph_steps(
    prep: _Prepared,
    bufs: tuple[torch.Tensor, torch.Tensor],
    flags: torch.Tensor,
    keys: list[int],
    block: int,
    precision: str,
) -> int:
    """Run most of ``len(keys)`` (2 or more) steps from ``bufs[0]`` by replaying a CUDA graph of an even number of
    steps ``bufs[0] → bufs[1] → … → bufs[0]``; returns how many it ran (the state is back in ``bufs[0]``).

    The graph reads its keys from a static ``(chunk,)`` device buffer, refilled (a device copy) before each replay.
    """
    chunks = _cdiv(len(keys), GRAPH_CHUNK)
    chunk = (len(keys) // chunks) // 2 * 2
    if chunk < 2:
        return 0
    device = bufs[0].device
    all_keys = torch.tensor(keys[: chunks * chunk], dtype=torch.int64).pin_memory().to(device, non_blocking=True)
    static_keys = torch.zeros(chunk, dtype=torch.int64, device=device)
    # warm up with the graph's arguments (the same specialisation: nothing compiles during the capture), on a side
    # stream as torch.cuda.graph advises; bufs[1] is scratch until the first replay overwrites it
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        _launch(prep, bufs[0], bufs[1], flags, 0, block, precision, static_keys, 0)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for j in range(chunk):
            _launch(prep, bufs[j % 2], bufs[(j + 1) % 2], flags, 0, block, precision, static_keys, j)
    for i in range(chunks):
        static_keys.copy_(all_keys[i * chunk : (i + 1) * chunk])
        graph.replay()
    return chunks * chunk


def _load() -> None:
    """Import triton and jit the kernels (once)."""
    global tl, _mix, _tap, _STEP, _POST
    if _STEP is not None:
        return
    import triton
    import triton.language as language

    tl = language
    _mix = triton.jit(_mix_impl)
    _tap = triton.jit(_tap_impl)
    _STEP = triton.jit(_step_kernel, do_not_specialize=["key_index", "key_value"])
    _POST = triton.jit(_post_kernel)


# ---- kernels (plain functions, jitted by _load; `tl` and `_mix` are module globals bound there) ----


def _mix_impl(x):
    """``lowbias32`` on uint32 (multiplication wraps mod 2**32), as :func:`ncacli.engine.counter_random.mix`."""
    x = x ^ (x >> 16)
    x = tl.mul(x, 0x7FEB352D, sanitize_overflow=False)  # the wrap is intended (debug mode would flag it)
    x = x ^ (x >> 15)
    x = tl.mul(x, 0x846CA68B, sanitize_overflow=False)
    return x ^ (x >> 16)


def _tap_impl(y, x, t, H, W, valid, CIRCULAR: tl.constexpr):
    """The neighbour at tap ``t`` (0..8, row-major over the 3×3 neighbourhood) of cells ``(y, x)`` →
    ``(ny, nx, inside)``: wrapped round the grid when ``CIRCULAR``, else flagged outside it (zero padding)."""
    ny = y + (t // 3 - 1)
    nx = x + (t % 3 - 1)
    if CIRCULAR:
        ny = (ny + H) % H
        nx = (nx + W) % W
        inside = valid
    else:
        inside = valid & (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)
    return ny, nx, inside


def _step_kernel(
    x_ptr,
    out_ptr,
    flags_ptr,
    kern_ptr,
    w1_ptr,
    b1_ptr,
    w2_ptr,
    b2_ptr,
    keys_ptr,
    key_index,
    key_value,
    n_cells,
    H,
    W,
    sxb,
    sxc,
    sxh,
    sxw,
    sob,
    soc,
    soh,
    sow,
    fire_rate,
    threshold,
    C: tl.constexpr,
    CP: tl.constexpr,
    KP: tl.constexpr,
    HP: tl.constexpr,
    BLOCK: tl.constexpr,
    CIRCULAR: tl.constexpr,
    FIRE: tl.constexpr,
    KEY_IN_MEMORY: tl.constexpr,
    ALIVE: tl.constexpr,
    TANH: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Cells ``pid·BLOCK …`` of a ``(B, C, H, W)`` state: read the 3×3×C neighbourhood, write the new C values and
    the flags byte (see the module text)."""
    n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = n < n_cells
    hw = H * W
    b = n // hw
    cell = n - b * hw  # y·W + x: the hash's cell counter
    y = cell // W
    x = cell - y * W
    ch = tl.arange(0, CP)
    cmask = ch < C
    kidx = tl.arange(0, KP)
    feats = tl.zeros([BLOCK, KP, CP], dtype=tl.float32)
    pre = n < 0  # any neighbour's alpha over the threshold (zero padding: outside cells never count)
    sample_offs = b * sxb
    ch_offs = ch * sxc
    for t in tl.static_range(9):
        ny, nx, inside = _tap(y, x, t, H, W, valid, CIRCULAR)
        offs = sample_offs + ny * sxh + nx * sxw
        nb = tl.load(x_ptr + offs[:, None] + ch_offs[None, :], mask=inside[:, None] & cmask[None, :], other=0.0)
        kt = tl.load(kern_ptr + t * KP + kidx)  # (KP,): each kernel's value at this tap
        feats += kt[None, :, None] * nb[:, None, :]
        if ALIVE:
            alpha = tl.sum(tl.where(ch[None, :] == 3, nb, 0.0), axis=1)  # channel 3 is alpha
            pre = pre | (inside & (alpha > threshold))
    centre_offs = sample_offs + y * sxh + x * sxw
    io_mask = valid[:, None] & cmask[None, :]
    centre = tl.load(x_ptr + centre_offs[:, None] + ch_offs[None, :], mask=io_mask, other=0.0)
    rows = tl.arange(0, KP * CP)
    hcol = tl.arange(0, HP)
    w1 = tl.load(w1_ptr + rows[:, None] * HP + hcol[None, :])
    hidden = tl.dot(tl.reshape(feats, [BLOCK, KP * CP]), w1, input_precision=PRECISION)
    hidden = tl.maximum(hidden + tl.load(b1_ptr + hcol)[None, :], 0.0)
    w2 = tl.load(w2_ptr + hcol[:, None] * CP + ch[None, :])
    dx = tl.dot(hidden, w2, input_precision=PRECISION) + tl.load(b2_ptr + ch)[None, :]
    if TANH:  # tanh(z) = sign(z)·(1 − e^(−2|z|)) / (1 + e^(−2|z|)); no overflow, absolute error ~1e-7
        e = tl.exp(-2.0 * tl.abs(dx))
        t_abs = (1.0 - e) / (1.0 + e)
        dx = tl.where(dx < 0, -t_abs, t_abs)
    if FIRE:  # the CounterRandom draw: mix(mix(sample ^ key) ^ cell), top 24 bits
        if KEY_IN_MEMORY:
            key = tl.load(keys_ptr + key_index).to(tl.uint32)
        else:
            key = key_value.to(tl.uint32, bitcast=True)
        bits = _mix(_mix(b.to(tl.uint32) ^ key) ^ cell.to(tl.uint32))
        u = (bits >> 8).to(tl.float32) * (1.0 / 16777216.0)
        dx = tl.where((u <= fire_rate)[:, None], dx, 0.0)
    new = centre + dx
    if ALIVE:
        new_alpha = tl.sum(tl.where(ch[None, :] == 3, new, 0.0), axis=1)
        flags = (new_alpha > threshold).to(tl.int8) | (pre.to(tl.int8) * 2)
        tl.store(flags_ptr + n, flags, mask=valid)
        new = tl.where(pre[:, None], new, 0.0)
    out_offs = b * sob + y * soh + x * sow
    tl.store(out_ptr + out_offs[:, None] + ch[None, :] * soc, new, mask=io_mask)


def _post_kernel(
    out_ptr,
    flags_ptr,
    n_cells,
    H,
    W,
    sob,
    soc,
    soh,
    sow,
    C: tl.constexpr,
    CP: tl.constexpr,
    BLOCK: tl.constexpr,
    CIRCULAR: tl.constexpr,
):
    """The post alive mask: zero the cells of ``out`` that were pre-alive (flag bit 1) but have no neighbour whose
    new alpha is over the threshold (flag bit 0)."""
    n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = n < n_cells
    hw = H * W
    b = n // hw
    cell = n - b * hw
    y = cell // W
    x = cell - y * W
    post = tl.zeros([BLOCK], dtype=tl.int8)
    sample_offs = b * hw
    for t in tl.static_range(9):
        ny, nx, inside = _tap(y, x, t, H, W, valid, CIRCULAR)
        f = tl.load(flags_ptr + (sample_offs + ny * W + nx), mask=inside, other=0)
        post = post | (f & 1)
    own = tl.load(flags_ptr + n, mask=valid, other=0)
    kill = valid & ((own & 2) != 0) & (post == 0)
    ch = tl.arange(0, CP)
    offs = b * sob + y * soh + x * sow
    zeros = tl.zeros([BLOCK, CP], dtype=tl.float32)
    tl.store(out_ptr + offs[:, None] + ch[None, :] * soc, zeros, mask=kill[:, None] & (ch < C)[None, :])
