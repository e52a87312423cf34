"""Perception: what a cell sees of its neighbourhood.

A perception maps a state ``(B, C, H, W)`` to features ``(B, C * K, H, W)`` and says how far it
looks: ``receptive_field`` is the side of the square neighbourhood a cell sees in one step.
Fixed-kernel perceptions are depthwise convolutions with ``K`` odd-sized kernels per channel,
features grouped per channel (``[c0·k0, c0·k1, …, c1·k0, …]``). The learned perceptions live in
:mod:`ncacli.engine.learned_perception`.
New perceptions come in through :data:`ncacli.registry.PERCEPTIONS` (the ``ncacli.perceptions`` entry-point
group, or :func:`register_perception` from code); each says what can run it in ``capabilities``:
``kernels`` (a depthwise convolution by the fixed kernels in ``weight``, which the fused kernel and the
benchmark reference run), ``taps`` (its features are linear in the cells' neighbours: :meth:`taps` gives them,
and the active engine computes them at the active cells alone), ``page`` (the interactive page can run it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IDENTITY = [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
SOBEL_X = [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]
LAPLACIAN = [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]
# Edge operators at 45° and 135° (the 3×3 Sobel rotated by 45°); rows run down the grid (y), columns right (x).
# SOBEL_45 grows towards the upper right, SOBEL_135 towards the lower right.
SOBEL_45 = [[0.0, 1.0, 2.0], [-1.0, 0.0, 1.0], [-2.0, -1.0, 0.0]]
SOBEL_135 = [[-2.0, -1.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 1.0, 2.0]]
# The 5×5 Sobel x-operator: entry (y, x) ∝ x / (x² + y²) (the 3×3 Sobel is the same rule at radius 1).
SOBEL5_X = [
    [-5.0, -4.0, 0.0, 4.0, 5.0],
    [-8.0, -10.0, 0.0, 10.0, 8.0],
    [-10.0, -20.0, 0.0, 20.0, 10.0],
    [-8.0, -10.0, 0.0, 10.0, 8.0],
    [-5.0, -4.0, 0.0, 4.0, 5.0],
]
# Its response to the ramp f(x) = x: Σ k(y, x)·x = 240, so SOBEL5_X / 240 measures d/dx per cell, like SOBEL_X / 8.
SOBEL5_GAIN = 240.0


def pad(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Pad ``(B, C, H, W)`` by ``size`` cells on each side; ``mode`` is ``zeros`` or ``circular``."""
    if mode == "circular":
        return F.pad(x, (size, size, size, size), mode="circular")
    return F.pad(x, (size, size, size, size))


def any_neighbour(mask: torch.Tensor, circular: bool = False) -> torch.Tensor:
    """``(B, 1, H, W)`` bool → where any cell of the 3×3 neighbourhood is set (beyond the edge: unset, or
    the opposite edge when ``circular``): an OR of shifted views, first along rows, then along columns."""
    m = mask[:, 0]
    if circular:
        m = torch.cat([m[:, -1:], m, m[:, :1]], dim=1)
        m = torch.cat([m[:, :, -1:], m, m[:, :, :1]], dim=2)
    else:
        m = F.pad(m, (1, 1, 1, 1))
    rows = m[:, :, :-2] | m[:, :, 1:-1] | m[:, :, 2:]
    return (rows[:, :-2] | rows[:, 1:-1] | rows[:, 2:]).unsqueeze(1)


def stack_kernels(kernels: list[list[list[float]]]) -> torch.Tensor:
    """Square, odd-sized kernels (sizes may differ) → ``(K, k, k)`` float32, each zero-padded to the largest
    size ``k`` around its centre (a 3×3 identity among 5×5 kernels stays the identity)."""
    tensors = [torch.tensor(kernel, dtype=torch.float32) for kernel in kernels]
    for t in tensors:
        if t.dim() != 2 or t.shape[0] != t.shape[1] or t.shape[0] % 2 == 0:
            raise ValueError(f"perception kernels must be square with an odd side, not {tuple(t.shape)}")
    size = max(t.shape[0] for t in tensors)
    return torch.stack([F.pad(t, [(size - t.shape[0]) // 2] * 4) for t in tensors])


@dataclass
class Taps:
    """A group of a perception's features that is linear in a cell's neighbours: gather the state's rows at
    ``offsets`` (``(dy, dx)`` pairs, rows running down the grid) into ``(N, T·C)``, tap-major, then multiply by
    the matrix ``(T·C, F)`` (:meth:`matrix`), add ``bias`` ``(F,)`` and apply ``activation`` (elementwise) when
    there is one. The matrix is ``blocks``, or, for a depthwise convolution, made from ``depthwise`` ``(T, K, C)``
    (``K`` kernels per channel, features ``(N, C·K)`` grouped per channel), which the active step can apply
    without it (:mod:`ncacli.engine.native`). Neither: the gathered rows are the features, unless ``shared``
    ``(K, T)`` says that every channel is convolved with the same ``K`` kernels (the fixed perceptions): then the
    features are ``(N, C·K)``, grouped per channel, computed with the kernels' own multiply-adds rather than ``C``
    times as many."""

    offsets: tuple[tuple[int, int], ...]
    blocks: torch.Tensor | None
    bias: torch.Tensor | None = None
    activation: Callable[[torch.Tensor], torch.Tensor] | None = None
    shared: torch.Tensor | None = None
    depthwise: torch.Tensor | None = None

    def matrix(self) -> torch.Tensor | None:
        """``(T·C, F)``: ``blocks``, or the block-diagonal matrix of ``depthwise``, entry ``[t·C + c, c·K + j]``
        the kernel ``j`` of channel ``c`` at tap ``t`` (differentiable in it); None for gathered rows as they are."""
        if self.depthwise is None:
            return self.blocks
        t, k, c = self.depthwise.shape
        eye = torch.eye(c, dtype=self.depthwise.dtype, device=self.depthwise.device)
        return torch.einsum("tkc,cd->tcdk", self.depthwise, eye).reshape(t * c, c * k)


def feature_count(perceive: nn.Module, seen: int) -> int:
    """How many features the perception gives a cell that has ``seen`` channels: its ``out_features`` when it
    says (a perception whose features are not grouped per channel), else ``seen × features_per_channel``."""
    total = getattr(perceive, "out_features", None)
    return int(total) if total is not None else seen * int(perceive.features_per_channel)


def depthwise_taps(weight: torch.Tensor, channels: int, dilation: int = 1, bias: torch.Tensor | None = None) -> Taps:
    """A depthwise convolution as :class:`Taps`: ``weight`` ``(C·K, 1, k, k)`` (K kernels per channel, features
    grouped per channel, ``[c0·k0, c0·k1, …]``), differentiable in ``weight``, gives ``depthwise`` ``(T, K, C)``;
    fixed kernels (``weight`` needs no gradient) leave out the taps where every kernel is zero. Fixed kernels
    that are the same for every channel come as ``shared`` ``(K, T)`` instead."""
    k = weight.shape[-1]
    kernels = weight.reshape(channels, -1, k * k)  # (C, K, k·k)
    taps = torch.arange(k * k, device=weight.device)
    if not weight.requires_grad:
        taps = kernels.abs().sum((0, 1)).nonzero().squeeze(1)
    half = k // 2
    offsets = tuple(((int(t) // k - half) * dilation, (int(t) % k - half) * dilation) for t in taps.tolist())
    if not weight.requires_grad and bias is None and bool((kernels == kernels[:1]).all()):
        return Taps(offsets, None, shared=kernels[0][:, taps].contiguous())
    return Taps(offsets, None, bias, depthwise=kernels[:, :, taps].permute(2, 1, 0))


class FixedKernelPerception(nn.Module):
    """Depthwise convolution of every channel with a fixed stack of odd-sized k×k kernels.

    Subclasses set ``kernels``: a list of square lists of odd side (3×3, 5×5, …; smaller kernels are
    centred in the largest). ``weight`` is a ``(C * K, 1, k, k)`` buffer, the input is padded by ``k // 2``
    and ``receptive_field`` is ``k`` (set from ``kernels`` when a subclass defines them).
    ``(B, C, H, W)`` → ``(B, C * len(kernels), H, W)``.
    """

    kernels: list[list[list[float]]] = []
    receptive_field = 3
    capabilities = frozenset({"kernels", "taps", "page"})

    def page(self, program: Any) -> None:
        """Its blocks on the page (:mod:`ncacli.web.program`): one per kernel, over every channel."""
        program.per_channel(self.weight, self.features_per_channel, 0)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "kernels" in cls.__dict__ and "receptive_field" not in cls.__dict__ and cls.kernels:
            cls.receptive_field = max(len(kernel) for kernel in cls.kernels)
        if "forward" in cls.__dict__ and "capabilities" not in cls.__dict__:
            cls.capabilities = frozenset()  # its own forward: nothing may assume it convolves by `weight`

    def __init__(self, channels: int, padding: str = "zeros") -> None:
        super().__init__()
        k = stack_kernels(self.kernels)  # (K, k, k)
        self.channels = channels
        self.padding = padding
        self.kernel_size = int(k.shape[-1])
        self.register_buffer("weight", k.repeat(channels, 1, 1).unsqueeze(1), persistent=False)

    @property
    def features_per_channel(self) -> int:
        return len(self.kernels)

    def taps(self) -> list[Taps]:
        """The features as one :class:`Taps` (the kernels are fixed: built once per device and dtype)."""
        key = (self.weight.device, self.weight.dtype)
        cache = self.__dict__.setdefault("_taps", {})
        if key not in cache:
            cache[key] = [depthwise_taps(self.weight, self.channels)]
        return cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, C * K, H, W)``."""
        half = self.kernel_size // 2
        if self.padding == "circular":
            return F.conv2d(pad(x, half, "circular"), self.weight, groups=self.channels)
        return F.conv2d(x, self.weight, padding=half, groups=self.channels)


class Sobel(FixedKernelPerception):
    """Identity + Sobel x/y, each Sobel divided by 8 (the Distill Growing NCA)."""

    kernels = [
        IDENTITY,
        [[v / 8 for v in row] for row in SOBEL_X],
        [[v / 8 for v in col] for col in zip(*SOBEL_X, strict=True)],
    ]


class SobelLaplacian(FixedKernelPerception):
    """Identity + Sobel x/y (/8) + the 5-point Laplacian (/8), as in Recreating Growing NCA."""

    kernels = Sobel.kernels + [[[v / 8 for v in row] for row in LAPLACIAN]]


class Sobel5(FixedKernelPerception):
    """Identity + the 5×5 Sobel x/y operators (the higher-resolution NCA study): receptive field 5, ``K = 3``.

    Normalisation: each operator is divided by 240, its response to a unit ramp, so on a linear field it
    reads the slope per cell exactly as the 3×3 Sobel / 8 does (both give 1 on ``f(x) = x``). Its absolute
    values then sum to 168 / 240 = 0.7 (the 3×3 / 8 kernels sum to 1), so features stay bounded by the state.
    """

    kernels = [
        IDENTITY,
        [[v / SOBEL5_GAIN for v in row] for row in SOBEL5_X],
        [[v / SOBEL5_GAIN for v in col] for col in zip(*SOBEL5_X, strict=True)],
    ]


class SobelDiagonal(FixedKernelPerception):
    """Identity + Sobel x/y + the 45° and 135° edge operators, all operators divided by 8 (the higher-resolution
    NCA study): ``K = 5``."""

    kernels = Sobel.kernels + [
        [[v / 8 for v in row] for row in SOBEL_45],
        [[v / 8 for v in row] for row in SOBEL_135],
    ]


def register_perception(name: str, factory: Any) -> None:
    """Register a perception class from code: ``factory(channels, padding=..., **options)`` → module with
    ``features_per_channel`` and ``receptive_field``."""
    PERCEPTIONS.register(name, factory)


def make_perception(name: str, channels: int, padding: str, options: dict[str, Any] | None = None) -> nn.Module:
    """The perception ``name`` for ``channels`` channels; ``options`` as the entry declares them."""
    return PERCEPTIONS.get(name, "perception")(channels, padding=padding, **(options or {}))


from ncacli.registry import PERCEPTIONS  # noqa: E402  (the registry imports nothing from here)
