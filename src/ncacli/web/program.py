"""A model as the page's GPU program: linear blocks and an MLP over 4-channel groups, weights as texels.

The page (``page.js``) keeps a state as a texture array, one RGBA layer per group of 4 channels. This
module turns a model into that layout, so the page only has to run three kinds of term:

- ``identity``: the source's own groups (the state a learned perception keeps);
- ``depthwise``: per tap of a k×k (dilated) kernel, one texel of 4 per-channel weights per group;
- ``dense``: per tap, output group and input group, 4 texels: the columns of a 4×4 block.

A *block* sums terms (plus a bias) into some feature groups; ``features`` are the blocks of the
perception, ``prepasses`` blocks computed into their own texture arrays first (a ReLU between two
convolutions), and ``mlp`` the update's 1×1 layers. Every reordering and zero-padding to whole
groups happens here; the first MLP layer's columns are permuted to the page's feature order.

Sources: ``x`` is what the perception sees, the state's groups (channels ``0..C-1``, zero-padded to
``4·⌈C/4⌉``) then the condition's (``K`` classes, padded to ``4·⌈K/4⌉``: one value per class for every cell
of a conditional growing model, a per-cell input image for a classifier); ``p0``, ``p1``, … are the
prepasses. Perceptions that are not linear convolutions (``attention``, ``deformable``) have no page.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ncacli.engine.nca import NCA
from ncacli.errors import NcaError
from ncacli.registry import capabilities


def groups(n: int) -> int:
    return math.ceil(n / 4)


class Texels:
    """The weight texture: 4 floats per texel, appended block by block; offsets count texels."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.size = 0

    def add(self, values: np.ndarray) -> int:
        values = np.asarray(values, dtype=np.float32).reshape(-1, 4)
        self.parts.append(values)
        self.size += len(values)
        return self.size - len(values)

    def array(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros((0, 4), np.float32)


class Source:
    """A texture array the page reads: ``slots[i]`` is the module channel held at GPU channel ``i``."""

    def __init__(self, name: str, slots: list[int | None]) -> None:
        self.name = name
        self.slots = slots + [None] * (-len(slots) % 4)

    @property
    def groups(self) -> int:
        return len(self.slots) // 4

    def columns(self, weight: torch.Tensor) -> np.ndarray:
        """``(O, I, …)`` over module channels → ``(O, 4·groups, …)`` over GPU channels, zero where padded."""
        w = weight.detach().float().cpu().numpy()
        out = np.zeros((w.shape[0], len(self.slots), *w.shape[2:]), np.float32)
        for i, c in enumerate(self.slots):
            if c is not None:
                out[:, i] = w[:, c]
        return out


class Program:
    def __init__(self, model: NCA) -> None:
        cfg = model.config
        self.model = model
        self.texels = Texels()
        state = list(range(cfg.channels)) + [None] * (-cfg.channels % 4)
        condition = list(range(cfg.channels, cfg.channels + cfg.condition_channels))
        self.x = Source("x", state + condition)
        self.prepasses: list[dict[str, Any]] = []
        self.sources = {"x": self.x}
        self.blocks: list[dict[str, Any]] = []
        self.feature_slots: list[int | None] = []  # the engine's feature index at each page feature channel

    # -- terms -------------------------------------------------------------------------------------

    def identity(self, source: Source) -> dict[str, Any]:
        return {"kind": "identity", "source": source.name}

    def depthwise(self, source: Source, kernels: np.ndarray, dilation: int = 1) -> dict[str, Any]:
        """``kernels`` ``(channels, k, k)`` over the source's module channels → one output group per input group."""
        full = np.zeros((len(source.slots), *kernels.shape[1:]), np.float32)
        for i, c in enumerate(source.slots):
            if c is not None:
                full[i] = kernels[c]
        k = kernels.shape[-1]
        taps = full.reshape(len(source.slots), k * k).T  # (taps, GPU channels) → texels (tap, group)
        return {
            "kind": "depthwise",
            "source": source.name,
            "k": k,
            "dilation": dilation,
            "weights": self.texels.add(taps),
        }

    def dense(self, source: Source, weight: torch.Tensor, dilation: int = 1) -> dict[str, Any]:
        """``weight`` ``(O, I, k, k)`` over the source's module channels; outputs in module order, padded."""
        w = source.columns(weight)  # (O, I4, k, k)
        o, i4, k, _ = w.shape
        w = np.concatenate([w, np.zeros((-o % 4, i4, k, k), np.float32)])  # (O4, I4, k, k)
        # texel (tap, out group, in group, column j) = w[4·og + 0..3, 4·ig + j]
        w = w.reshape(groups(o), 4, i4 // 4, 4, k * k).transpose(4, 0, 2, 3, 1)
        return {"kind": "dense", "source": source.name, "k": k, "dilation": dilation, "weights": self.texels.add(w)}

    def bias(self, values: torch.Tensor | np.ndarray, slots: list[int | None]) -> int:
        v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, np.float32)
        return self.texels.add([0.0 if s is None else v[s] for s in slots])

    # -- blocks ------------------------------------------------------------------------------------

    def block(self, terms: list[dict[str, Any]], slots: list[int | None], bias: int | None = None) -> None:
        """A feature block: page feature channels ``slots`` (engine feature indices, None = padding)."""
        slots = slots + [None] * (-len(slots) % 4)
        self.blocks.append({"groups": len(slots) // 4, "terms": terms, "bias": bias})
        self.feature_slots += slots

    def per_channel(self, weight: torch.Tensor, per: int, base: int, dilation: int = 1, bias=None) -> None:
        """A depthwise convolution whose outputs are grouped per channel (``o = c·per + k``), as the
        fixed kernels, the scaled Sobel and a depthwise learned convolution: one block per kernel ``k``."""
        w = weight.detach().float().cpu().numpy()[:, 0]  # (C·per, k, k)
        for kk in range(per):
            slots = [None if c is None else base + c * per + kk for c in self.x.slots]
            b = None if bias is None else self.bias(bias, [None if c is None else c * per + kk for c in self.x.slots])
            if b is None and self.is_identity(w[kk::per]):
                term = self.identity(self.x)
            else:
                term = self.depthwise(self.x, w[kk::per], dilation)
            self.block([term], slots, b)

    @staticmethod
    def is_identity(kernels: np.ndarray) -> bool:
        k = kernels.shape[-1]
        delta = np.zeros((k, k), np.float32)
        delta[k // 2, k // 2] = 1.0
        return bool(np.all(kernels == delta))

    def conv(self, conv: nn.Conv2d, base: int, source: Source | None = None, extra: list | None = None) -> None:
        """A learned convolution's outputs ``base + o`` (``o`` in module order) as one block; ``extra`` terms
        (a skip connection) are added to it."""
        source = source or self.x
        out = conv.out_channels
        slots = [base + o for o in range(out)]
        if conv.groups == 1:
            term = self.dense(source, conv.weight, conv.dilation[0])
        else:
            raise NcaError("a grouped convolution outside a depthwise perception has no page")
        b = self.bias(conv.bias, list(range(out)) + [None] * (-out % 4)) if conv.bias is not None else None
        self.block([term, *(extra or [])], slots, b)

    # -- what the hooks ask for ---------------------------------------------------------------------

    @property
    def seen(self) -> int:
        """The channels the perception sees: the state's and the condition's."""
        return len([s for s in self.x.slots if s is not None])

    def keep_state(self) -> None:
        """The state as the first features (a learned perception that keeps it)."""
        self.block([self.identity(self.x)], list(self.x.slots))

    def prepass(self, conv: nn.Conv2d) -> Source:
        """``conv`` over ``x`` and a ReLU, computed into a texture array of its own first → what it is read as."""
        hidden = conv.out_channels
        name = f"p{len(self.prepasses)}"
        bias = self.bias(conv.bias, self.padded(hidden))
        term = self.dense(self.x, conv.weight, conv.dilation[0])
        self.prepasses.append({"name": name, "groups": groups(hidden), "terms": [term], "bias": bias, "relu": True})
        source = self.sources[name] = Source(name, list(range(hidden)))
        return source

    def bias_term(self, values: torch.Tensor, n: int) -> dict[str, Any]:
        """A bias of ``n`` outputs as a term of a block (a skip connection's)."""
        return {"kind": "bias", "bias": self.bias(values, self.padded(n))}

    # -- the perception and the update: each says how it runs on the page ------------------------

    def perception(self, p: nn.Module) -> None:
        """The perception's blocks, from its own hook ``page(program)``: the fixed kernels, the learned
        convolutions and their combinations declare one (capability ``page``); others have no page."""
        hook = getattr(p, "page", None)
        if "page" not in capabilities(p) or not callable(hook):
            raise self.unsupported()
        hook(self)

    @staticmethod
    def padded(n: int) -> list[int | None]:
        return list(range(n)) + [None] * (-n % 4)

    def unsupported(self) -> NcaError:
        name, options = self.model.config.perception, self.model.config.perception_options
        which = f"perception {name!r} with options {options}" if options else f"perception {name!r}"
        return NcaError(
            f"{which} is not a linear convolution grouped per channel, so it has no interactive page yet "
            "(pages run sobel, sobel_laplacian, sobel5, sobel_diagonal, conv, conv_scaled, combined and residual, "
            "keeping the state, without activations); render a .gif or .mp4 instead"
        )

    # -- the update --------------------------------------------------------------------------------

    def mlp(self, update: nn.Module) -> list[dict[str, Any]]:
        """The update's 1×1 layers, from its own hook ``layers()`` → ``[(conv, relu, residual)]``."""
        hook = getattr(update, "layers", None)
        layers = hook() if "page" in capabilities(update) and callable(hook) else None
        if layers is None:
            cfg = self.model.config
            which = f"update {cfg.update!r}" + (f" with options {cfg.update_options}" if cfg.update_options else "")
            raise NcaError(f"{which} has no interactive page (pages run mlp and residual, with ReLU)")
        out = []
        inputs = Source("features", self.feature_slots)
        for index, (conv, relu, residual) in enumerate(layers):
            source = inputs if index == 0 else Source("h", list(range(conv.in_channels)))
            term = self.dense(source, conv.weight)
            n = conv.out_channels
            slots = self.padded(n)
            out.append(
                {
                    "in": source.groups,
                    "out": groups(n),
                    "weights": term["weights"],
                    "bias": self.bias(conv.bias, slots),
                    "relu": relu,
                    "residual": residual,
                }
            )
        return out


def page_program(model: NCA) -> dict[str, Any]:
    """The page's description of ``model``: blocks, MLP, the rule's settings, and the weights (base64)."""
    cfg = model.config
    if "steps" not in capabilities(model):
        raise NcaError(
            f"a {cfg.architecture} model does not step, so it has no interactive page; render a .gif or .mp4 instead"
        )
    program = Program(model)
    program.perception(model.perceive)
    mlp = program.mlp(model.update)
    texels = program.texels.array()
    return {
        "channels": cfg.channels,
        "groups": groups(cfg.channels),
        "condition_channels": cfg.condition_channels,
        "condition_groups": groups(cfg.condition_channels),
        "padding": cfg.padding_mode,
        "fire_rate": cfg.fire_rate,
        "alive_masking": cfg.alive_masking,
        "alive_threshold": cfg.alive_threshold,
        "alive_from": cfg.alive_from,
        "update_tanh": cfg.update_tanh,
        "signal_channels": cfg.signal_channels,
        "signal_steps": cfg.signal_steps,
        "prepasses": program.prepasses,
        "features": program.blocks,
        "mlp": mlp,
        "texels": len(texels),
        "weights": base64.b64encode(texels.astype("<f4").tobytes()).decode("ascii"),
    }
