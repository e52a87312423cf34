"""Learned perceptions: trainable neighbourhood features (the higher-resolution NCA study's trainable Sobel,
NCAtorch's modules).

Every class here is an ``nn.Module`` built as ``Cls(channels, padding="zeros", **options)`` (``padding`` is
``zeros`` or ``circular``) that maps a state ``(B, C, H, W)`` to features ``(B, C * K, H, W)`` with
``K = features_per_channel``, and says how far it looks: ``receptive_field`` is the side of the square
neighbourhood whose cells can change a cell's features in one step.

Apart from :class:`ScaledConvPerception` (whose features are grouped per channel like the fixed Sobel), the
features are laid out group-major: the state itself first, then ``C * (K - 1)`` learned features,
``cat(x, learned(x))``. Keeping ``x`` means an untrained model sees its own cell exactly; the NCA's update
layer starts at zero, so an untrained NCA leaves the state unchanged whatever the perception.

Defaults use PyTorch's initialisation (deterministic under ``torch.manual_seed``) unless a class says
otherwise. The code is device-agnostic; ``deform_conv2d``'s CUDA backward accumulates with atomics, so
:class:`DeformablePerception`'s gradients are not bit-for-bit repeatable on a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ncacli.engine.perception import Sobel, SobelLaplacian, Taps, depthwise_taps, feature_count, pad, stack_kernels
from ncacli.names import PADDING_MODES as PADDINGS  # noqa: E402


def conv_same(x: torch.Tensor, conv: nn.Conv2d, padding: str) -> torch.Tensor:
    """Apply ``conv`` (stride 1, built with ``padding=0``) so that ``(B, C, H, W)`` keeps its ``H, W``.

    The input is padded by ``dilation * (k // 2)`` cells, with zeros or wrapping round (``circular``).
    """
    half = conv.dilation[0] * (conv.kernel_size[0] // 2)
    if padding == "circular" and half:
        return F.conv2d(pad(x, half, "circular"), conv.weight, conv.bias, dilation=conv.dilation, groups=conv.groups)
    return F.conv2d(x, conv.weight, conv.bias, padding=half, dilation=conv.dilation, groups=conv.groups)


def pad_same(x: torch.Tensor, size: int, padding: str) -> torch.Tensor:
    """Pad ``(B, C, H, W)`` by ``size`` cells each side: zeros, or the opposite edge for ``circular``."""
    return pad(x, size, padding) if size else x


ACTIVATIONS = ("none", "leaky_relu")  # after a learned convolution; leaky_relu: slope 0.2, the NCAtorch review's


def activation_of(name: str):
    """The elementwise function ``name`` (one of :data:`ACTIVATIONS`), or ``None`` for ``none``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {name!r}")
    return None if name == "none" else (lambda y: F.leaky_relu(y, 0.2))


class LearnedPerception(nn.Module):
    """Base of the learned perceptions: ``forward(x) = cat(x, learned(x))``, or ``learned(x)`` alone with
    ``keep_state=False`` (the NCAtorch review's modules, whose update sees only what they learned).

    Subclasses implement :meth:`learned`: ``(B, C, H, W)`` → ``(B, learned_count, H, W)`` (by default
    ``learned_count = C * features``), and set ``receptive_field``. ``out_features`` counts every feature
    (the state's included), ``features_per_channel = out_features / C``.
    """

    receptive_field = 3
    capabilities: frozenset[str] = frozenset()  # the page runs the conv and residual parts (and their combination)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if ("forward" in cls.__dict__ or "learned" in cls.__dict__) and "capabilities" not in cls.__dict__:
            cls.capabilities = frozenset()

    def __init__(self, channels: int, padding: str = "zeros", features: int = 3, keep_state: bool = True) -> None:
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be 'zeros' or 'circular', not {padding!r}")
        if channels < 1 or features < 1:
            raise ValueError("a perception needs at least one channel and one learned feature per channel")
        self.channels = channels
        self.padding = padding
        self.features = features
        self.keep_state = keep_state
        self.learned_count = channels * features

    @property
    def out_features(self) -> int:
        return self.channels * self.keep_state + self.learned_count

    @property
    def features_per_channel(self) -> int | float:
        per, rest = divmod(self.out_features, self.channels)
        return per if not rest else self.out_features / self.channels

    def learned(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, C * features, H, W)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, out_features, H, W)``: the state, then the learned features."""
        return torch.cat([x, self.learned(x)], dim=1) if self.keep_state else self.learned(x)

    def learned_taps(self) -> list[Taps]:
        """:meth:`learned` as :class:`Taps`, for the perceptions with the ``taps`` capability."""
        raise NotImplementedError

    def taps(self) -> list[Taps]:
        """The features as :class:`Taps`: the cell's own state (when kept), then :meth:`learned_taps`."""
        return [Taps(((0, 0),), None)] * self.keep_state + self.learned_taps()

    def page(self, program: Any) -> None:
        """Its blocks on the page (:mod:`ncacli.web.program`): the state kept, then each learned part's."""
        program.keep_state()
        base = program.seen
        for part in self.page_parts():
            hook = getattr(part, "page_part", None)
            if not callable(hook):
                raise program.unsupported()
            hook(program, base)
            base += program.seen * part.features

    def page_parts(self) -> list[nn.Module]:
        """The parts whose features follow the state, in order (a combination's parts; else itself)."""
        return [self]

    def drop_page_unless_per_channel(self) -> None:
        """The page runs learned features grouped per channel after the state, linear: anything else is not
        for it (an instance's capabilities narrow its class's)."""
        if not self.keep_state or self.learned_count != self.channels * self.features:
            self.capabilities = frozenset(self.capabilities) - {"page"}


class ConvPerception(LearnedPerception):
    """A learned k×k convolution with dilation (NCAtorch's convolution perception).

    ``mode``: ``depthwise`` (default; each channel convolved with ``features`` kernels of its own),
    ``separable`` (the depthwise convolution, without bias, then a 1×1 convolution mixing all
    ``C * features`` outputs) or ``full`` (every feature sees every channel). Receptive field
    ``dilation * (kernel_size - 1) + 1``: 3 by default, 9 for 5×5 with dilation 2.
    ``(B, C, H, W)`` → ``(B, C * (1 + features), H, W)``.

    The NCAtorch review's modules: ``mode="full"`` with ``out_features`` learned features in all (its
    ``OUT_CHANNEL``, 80), ``activation="leaky_relu"`` (slope 0.2) and ``keep_state=False``:
    ``(B, C, H, W)`` → ``(B, out_features, H, W)``.
    """

    MODES = ("depthwise", "separable", "full")
    capabilities = frozenset({"page", "taps"})

    def __init__(
        self,
        channels: int,
        padding: str = "zeros",
        kernel_size: int = 3,
        dilation: int = 1,
        features: int = 3,
        mode: str = "depthwise",
        out_features: int | None = None,
        activation: str = "none",
        keep_state: bool = True,
    ) -> None:
        super().__init__(channels, padding, features, keep_state)
        if kernel_size < 1 or kernel_size % 2 == 0 or dilation < 1:
            raise ValueError("kernel_size must be odd and positive, dilation at least 1")
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, not {mode!r}")
        if out_features is not None and (mode != "full" or out_features < 1):
            raise ValueError("out_features (a positive count) is for mode 'full': the other modes are per channel")
        self.mode = mode
        self.act = activation_of(activation)
        self.receptive_field = dilation * (kernel_size - 1) + 1
        out = self.learned_count = out_features or channels * features
        groups = 1 if mode == "full" else channels
        self.conv = nn.Conv2d(channels, out, kernel_size, dilation=dilation, groups=groups, bias=mode != "separable")
        self.mix = nn.Conv2d(out, out, 1) if mode == "separable" else None
        self.drop_page_unless_per_channel()
        if self.act is not None:
            self.capabilities = frozenset(self.capabilities) - {"page"}

    def page_part(self, program: Any, base: int) -> None:
        """Its features ``base + o`` on the page: depthwise per channel, full as one block, separable with the
        1×1 mix folded into one full convolution."""
        conv, d = self.conv, self.conv.dilation[0]
        if self.mode == "depthwise":
            program.per_channel(conv.weight, self.features, base, d, conv.bias)
        elif self.mode == "full":
            program.conv(conv, base)
        else:
            dw = conv.weight.detach()[:, 0]  # (C·f, k, k), output m = c·f + kk reads channel c
            f, c = self.features, self.channels
            full = torch.zeros(dw.shape[0], c, *dw.shape[1:])
            for m in range(dw.shape[0]):
                full[:, m // f] += self.mix.weight.detach()[:, m, 0, 0, None, None] * dw[m]
            folded = nn.Conv2d(c, dw.shape[0], dw.shape[-1], dilation=d)
            folded.weight.data, folded.bias.data = full, self.mix.bias.detach().clone()
            program.conv(folded, base)

    def learned(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, learned_count, H, W)``."""
        y = conv_same(x, self.conv, self.padding)
        y = self.mix(y) if self.mix is not None else y
        return y if self.act is None else self.act(y)

    def learned_taps(self) -> list[Taps]:
        """The convolution as one :class:`Taps` (the 1×1 mixing of ``separable`` folded into its blocks)."""
        conv, c = self.conv, self.channels
        if self.mode == "full":  # weight (C·F, C, k, k): blocks[t·C + c, o] = weight[o, c, t]
            k, d = conv.kernel_size[0], conv.dilation[0]
            offsets = tuple(((t // k - k // 2) * d, (t % k - k // 2) * d) for t in range(k * k))
            return [Taps(offsets, conv.weight.permute(2, 3, 1, 0).reshape(k * k * c, -1), conv.bias, self.act)]
        taps = depthwise_taps(conv.weight, c, conv.dilation[0], conv.bias)
        if self.mix is not None:
            mix = self.mix.weight.reshape(self.mix.out_channels, -1)
            taps = Taps(taps.offsets, taps.matrix() @ mix.T, self.mix.bias)
        taps.activation = self.act
        return [taps]


class ScaledConvPerception(nn.Module):
    """A learned depthwise 3×3 convolution started as identity + Sobel x/y (/8), times a trainable scale
    (the higher-resolution NCA study's "scale factor" method).

    ``features = scale * conv(x)`` with features grouped per channel like :class:`Sobel`
    (``[c0·id, c0·dx, c0·dy, c1·id, …]``), so an untrained one is exactly the ``sobel`` perception.
    ``scale`` is one scalar (default) or, with ``per_feature=True``, one per output feature ``(C * 3,)``;
    it starts at 1. ``scale_identity=False`` is the study's form: the scale modulates the gradient features
    only, and each channel's identity feature passes unscaled (with ``per_feature``, the identity entries of
    ``scale`` are then unused). The default, ``True``, scales every feature, as files written before the option
    did. No bias. Receptive field 3. ``(B, C, H, W)`` → ``(B, C * 3, H, W)``.
    """

    receptive_field = 3
    capabilities = frozenset({"page", "taps"})

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "forward" in cls.__dict__ and "capabilities" not in cls.__dict__:
            cls.capabilities = frozenset()

    def page(self, program: Any) -> None:
        """Its blocks on the page: the scaled kernels, one block per kernel over every channel."""
        program.per_channel(self.scaled_weight().detach(), self.features_per_channel, 0)

    def __init__(
        self, channels: int, padding: str = "zeros", per_feature: bool = False, scale_identity: bool = True
    ) -> None:
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be 'zeros' or 'circular', not {padding!r}")
        self.channels = channels
        self.padding = padding
        self.scale_identity = scale_identity
        kernels = stack_kernels(Sobel.kernels)  # (3, 3, 3)
        self.weight = nn.Parameter(kernels.repeat(channels, 1, 1).unsqueeze(1))  # (C * 3, 1, 3, 3)
        self.scale = nn.Parameter(torch.ones(channels * len(kernels) if per_feature else 1))
        # 1 where the scale applies: every feature, or the gradients only (not each channel's first, the identity)
        applies = torch.ones(channels, len(kernels))
        if not scale_identity:
            applies[:, 0] = 0
        self.register_buffer("applies", applies.reshape(-1), persistent=False)

    @property
    def features_per_channel(self) -> int:
        return self.weight.shape[0] // self.channels

    def scaled_weight(self) -> torch.Tensor:
        """The kernels times their scale, ``(C * 3, 1, 3, 3)``: the convolution this perception is."""
        factor = self.applies * self.scale + (1 - self.applies)  # (C * 3,)
        return self.weight * factor.view(-1, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, C * 3, H, W)``."""
        if self.padding == "circular":
            return F.conv2d(pad(x, 1, "circular"), self.scaled_weight(), groups=self.channels)
        return F.conv2d(x, self.scaled_weight(), padding=1, groups=self.channels)

    def taps(self) -> list[Taps]:
        """The scaled kernels as one :class:`Taps` (features grouped per channel, the state among them)."""
        return [depthwise_taps(self.scaled_weight(), self.channels)]


class AttentionPerception(LearnedPerception):
    """Local self-attention over the k×k neighbourhood (NCAtorch's attention perception, after ViTCA).

    Per head: the query comes from the centre cell, keys and values from the ``k²`` neighbours (the state
    is padded first, so outside cells are zero states, or the wrapped-round ones), all learned 1×1
    projections; softmax over the neighbours of ``q·k / √d`` plus a learned bias per head and relative
    position (starting at zero). Values: ``C * features`` per cell, split over ``heads``; ``key_dim`` per
    head defaults to ``channels``. Each output is a convex combination of neighbours' values, so bounded.
    Receptive field ``kernel_size``. ``(B, C, H, W)`` → ``(B, C * (1 + features), H, W)``.
    """

    def __init__(
        self,
        channels: int,
        padding: str = "zeros",
        kernel_size: int = 3,
        features: int = 3,
        heads: int = 1,
        key_dim: int | None = None,
    ) -> None:
        super().__init__(channels, padding, features)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd and positive")
        if (channels * features) % heads:
            raise ValueError(f"heads ({heads}) must divide channels * features ({channels * features})")
        self.kernel_size = kernel_size
        self.receptive_field = kernel_size
        self.heads = heads
        self.key_dim = key_dim or channels
        self.query = nn.Conv2d(channels, heads * self.key_dim, 1)
        self.key = nn.Conv2d(channels, heads * self.key_dim, 1)
        self.value = nn.Conv2d(channels, channels * features, 1)
        self.position_bias = nn.Parameter(torch.zeros(heads, kernel_size * kernel_size))

    def learned(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, C * features, H, W)``."""
        b, _, h, w = x.shape
        k, heads, dk = self.kernel_size, self.heads, self.key_dim
        q = self.query(x).reshape(b, heads, dk, h, w)
        xp = pad_same(x, k // 2, self.padding)
        keys = self.key(xp)  # (B, heads * dk, H + k - 1, W + k - 1)
        values = self.value(xp)  # (B, C * features, H + k - 1, W + k - 1)
        # the k² neighbours, row by row: (B, D, k², H, W)
        keys = torch.stack([keys[:, :, i : i + h, j : j + w] for i in range(k) for j in range(k)], dim=2)
        values = torch.stack([values[:, :, i : i + h, j : j + w] for i in range(k) for j in range(k)], dim=2)
        keys = keys.reshape(b, heads, dk, k * k, h, w)
        values = values.reshape(b, heads, -1, k * k, h, w)
        logits = torch.einsum("bgdhw,bgdnhw->bgnhw", q, keys) / math.sqrt(dk)
        weights = torch.softmax(logits + self.position_bias.view(1, heads, k * k, 1, 1), dim=2)
        out = torch.einsum("bgnhw,bgvnhw->bgvhw", weights, values)
        return out.reshape(b, self.channels * self.features, h, w)


class DeformablePerception(LearnedPerception):
    """A depthwise deformable k×k convolution (``torchvision.ops.deform_conv2d``; NCAtorch's deformable
    perception): each kernel tap samples the state bilinearly at its grid position plus a learned offset.

    Offsets ``(B, 2 * offset_groups * k², H, W)`` come from a 3×3 convolution of the state, squashed to
    ``max_offset * tanh(·)`` so the perception stays local; that convolution starts at zero, so an untrained
    one is a plain depthwise convolution, started (for 3×3) as Sobel x, Sobel y and the Laplacian, each /8
    (smaller than k×k kernels centred). Three learned features per channel, grouped per channel, after the
    state. Receptive field ``kernel_size + 2 * ceil(max_offset)`` (5 by default: a tap at ±1 moved by less
    than one cell reads cells up to 2 away). ``(B, C, H, W)`` → ``(B, C * 4, H, W)``.
    """

    def __init__(
        self,
        channels: int,
        padding: str = "zeros",
        kernel_size: int = 3,
        max_offset: float = 1.0,
        offset_groups: int = 1,
    ) -> None:
        super().__init__(channels, padding, features=3)
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd and at least 3")
        if max_offset <= 0:
            raise ValueError("max_offset must be positive (use the conv perception for no offsets)")
        if channels % offset_groups:
            raise ValueError(f"offset_groups ({offset_groups}) must divide channels ({channels})")
        self.kernel_size = kernel_size
        self.max_offset = float(max_offset)
        self.reach = math.ceil(self.max_offset)  # whole cells an offset can move a tap's bilinear footprint
        self.receptive_field = kernel_size + 2 * self.reach
        start = SobelLaplacian.kernels[1:]  # Sobel x, Sobel y, Laplacian, each /8
        grown = [[[0.0] * kernel_size for _ in range(kernel_size)]] + start  # the zero k×k kernel sets the size
        kernels = stack_kernels(grown)[1:]  # (3, k, k)
        self.weight = nn.Parameter(kernels.repeat(channels, 1, 1).unsqueeze(1))  # (C * 3, 1, k, k)
        self.offset = nn.Conv2d(channels, 2 * offset_groups * kernel_size * kernel_size, 3)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def offsets(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → offsets ``(B, 2 * offset_groups * k², H, W)`` in cells, each in ``(−max, max)``."""
        return self.max_offset * torch.tanh(conv_same(x, self.offset, self.padding))

    def learned(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, C * 3, H, W)``."""
        from torchvision.ops import deform_conv2d

        offset = self.offsets(x).contiguous()
        weight = self.weight.contiguous()
        half = self.kernel_size // 2
        if self.padding == "zeros":  # taps that land outside the grid read zeros
            return deform_conv2d(x.contiguous(), offset, weight, padding=(half, half))
        # circular: wrap far enough that no moved tap leaves the padded grid, run on a grid `reach` cells
        # larger on each side (zero offsets there) and keep the middle
        h, w, r = x.shape[2], x.shape[3], self.reach
        xp = pad(x, half + r, "circular").contiguous()
        y = deform_conv2d(xp, F.pad(offset, (r, r, r, r)), weight)
        return y[:, :, r : r + h, r : r + w]


class ResidualPerception(LearnedPerception):
    """Two k×k convolutions with a skip connection (NCAtorch's residual perception):
    ``conv2(relu(conv1(x))) + skip(x)``, ``skip`` a learned 1×1 convolution (the identity when
    ``features == 1``). ``hidden`` (default ``channels``) is the width between the convolutions.
    Receptive field ``2 * (kernel_size - 1) + 1`` (5 by default). ``(B, C, H, W)`` → ``(B, C * (1 + features), H, W)``.
    """

    receptive_field = 5
    capabilities = frozenset({"page"})

    def __init__(
        self,
        channels: int,
        padding: str = "zeros",
        kernel_size: int = 3,
        features: int = 3,
        hidden: int | None = None,
    ) -> None:
        super().__init__(channels, padding, features)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd and positive")
        hidden = hidden or channels
        self.receptive_field = 2 * (kernel_size - 1) + 1
        self.conv1 = nn.Conv2d(channels, hidden, kernel_size)
        self.conv2 = nn.Conv2d(hidden, channels * features, kernel_size)
        self.skip = nn.Conv2d(channels, channels * features, 1) if features != 1 else nn.Identity()

    def page_part(self, program: Any, base: int) -> None:
        """Its features on the page: the first convolution and its ReLU computed first, then the second with
        the skip connection added."""
        source = program.prepass(self.conv1)
        skip = self.skip.weight if isinstance(self.skip, nn.Conv2d) else torch.eye(self.channels)[:, :, None, None]
        extra = [program.dense(program.x, skip)]
        if isinstance(self.skip, nn.Conv2d):
            extra.append(program.bias_term(self.skip.bias, self.skip.out_channels))
        program.conv(self.conv2, base, source, extra)

    def learned(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, C * features, H, W)``."""
        h = F.relu(conv_same(x, self.conv1, self.padding))
        return conv_same(h, self.conv2, self.padding) + self.skip(x)


PARTS: dict[str, type[LearnedPerception]] = {
    "conv": ConvPerception,
    "attention": AttentionPerception,
    "deformable": DeformablePerception,
    "residual": ResidualPerception,
}


class CombinedPerception(LearnedPerception):
    """Several learned perceptions side by side, the state included once (NCAtorch's "Combined"
    MultiPerception): ``cat(x, part₁.learned(x), part₂.learned(x), …)``.

    ``parts``: one mapping per part, ``{"kind": "conv" | "attention" | "deformable" | "residual", **options}``
    (``kind`` defaults to ``conv``). Default: a 3×3 convolution and a 5×5 convolution with dilation 2,
    receptive field 9, ``K = 1 + 3 + 3 = 7``. The receptive field is the largest part's.
    ``(B, C, H, W)`` → ``(B, C * (1 + Σ features), H, W)``.
    """

    receptive_field = 9
    capabilities = frozenset({"page", "taps"})  # as a class; an instance has them only when every part has them
    DEFAULT_PARTS: tuple[Mapping[str, Any], ...] = ({"kernel_size": 3}, {"kernel_size": 5, "dilation": 2})

    def __init__(
        self, channels: int, padding: str = "zeros", parts: list | None = None, keep_state: bool = True
    ) -> None:
        specs = [dict(spec) for spec in (parts if parts is not None else self.DEFAULT_PARTS)]
        if not specs:
            raise ValueError("a combined perception needs at least one part")
        modules = []
        for spec in specs:
            kind = spec.pop("kind", "conv")
            if kind not in PARTS:
                raise ValueError(f"unknown part kind {kind!r}; known: {sorted(PARTS)}")
            modules.append(PARTS[kind](channels, padding, **spec))
        super().__init__(channels, padding, sum(m.features for m in modules), keep_state)
        self.parts = nn.ModuleList(modules)
        self.learned_count = sum(m.learned_count for m in modules)
        self.receptive_field = max(m.receptive_field for m in modules)
        self.capabilities = frozenset.intersection(*(frozenset(m.capabilities) for m in modules))
        self.drop_page_unless_per_channel()

    def learned(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, C * Σ features, H, W)``."""
        return torch.cat([part.learned(x) for part in self.parts], dim=1)

    def page_parts(self) -> list[nn.Module]:
        return list(self.parts)

    def learned_taps(self) -> list[Taps]:
        """Every part's :class:`Taps`, in order."""
        return [taps for part in self.parts for taps in part.learned_taps()]


def describe(perception: nn.Module, seen: int | None = None) -> dict[str, Any]:
    """``{"receptive_field", "parameters", "features", "features_per_channel"}`` for any perception module of
    ``seen`` input channels (default: the channels it was built for); ``features_per_channel`` is None where the
    features are not grouped per channel.

    ``parameters`` counts trainable and frozen ``nn.Parameter`` elements; buffers (the fixed kernels) are not
    parameters, so fixed perceptions report 0.
    """
    seen = seen or perception.channels
    features = feature_count(perception, seen)
    return {
        "receptive_field": int(perception.receptive_field),
        "parameters": sum(p.numel() for p in perception.parameters()),
        "features": features,
        "features_per_channel": features // seen if features % seen == 0 else None,
    }
