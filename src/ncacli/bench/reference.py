"""A plain PyTorch NCA step, written for clarity rather than speed, to measure the engine against.

NCHW tensors, the perception as one depthwise ``F.conv2d`` with the perception's fixed kernels,
each MLP layer as a 1×1 ``F.conv2d``, and float masks. Same semantics as :class:`ncacli.engine.NCA`:
fire mask ``torch.rand(B, 1, H, W, generator=g) <= fire_rate`` drawn once per step, alive masking
by a 3×3 max-pool of alpha before and after the update, zeros or circular padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ncacli.engine.active import fixed_kernel
from ncacli.engine.nca import NCA
from ncacli.registry import capabilities


class NoReference(Exception):
    """The model has a part the reference does not implement (a learned or custom perception)."""


class ReferenceNCA(nn.Module):
    """The NCA step written out by hand, with weights copied from an engine :class:`NCA`."""

    def __init__(self, model: NCA) -> None:
        super().__init__()
        cfg = model.config
        if not isinstance(model, NCA):
            raise NoReference(f"no reference for a {cfg.architecture} model")
        perceive, update = model.perceive, model.update
        if not fixed_kernel(perceive):
            raise NoReference(f"no reference for perception {cfg.perception!r}")
        if "fused" not in capabilities(update) or not callable(getattr(update, "layers", None)):
            raise NoReference(f"no reference for update {cfg.update!r}")
        if cfg.signal_channels and cfg.signal_steps:
            raise NoReference("no reference for signal channels")
        self.update_tanh = cfg.update_tanh
        self.channels = cfg.channels
        self.fire_rate = cfg.fire_rate
        self.alive_threshold = cfg.alive_threshold
        self.alive_masking = cfg.alive_masking
        self.circular = cfg.padding_mode == "circular"
        # (C * K, 1, 3, 3): K kernels per channel, grouped per channel
        self.register_buffer("kernel", perceive.weight.detach().clone().contiguous())
        convs = [conv for conv, _, _ in update.layers()]
        self.weights = nn.ParameterList([nn.Parameter(c.weight.detach().clone().contiguous()) for c in convs])
        self.biases = nn.ParameterList([nn.Parameter(c.bias.detach().clone().contiguous()) for c in convs])

    def alive(self, x: torch.Tensor) -> torch.Tensor:
        """1.0 where some alpha in the 3×3 neighbourhood exceeds the threshold: ``(B, 1, H, W)`` float."""
        alpha = x[:, 3:4]
        if self.circular:
            pooled = F.max_pool2d(F.pad(alpha, (1, 1, 1, 1), mode="circular"), 3, 1)
        else:
            pooled = F.max_pool2d(alpha, 3, 1, 1)
        return (pooled > self.alive_threshold).float()

    def perceive(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, C * K, H, W)``."""
        half = self.kernel.shape[-1] // 2
        if self.circular:
            return F.conv2d(F.pad(x, (half,) * 4, mode="circular"), self.kernel, groups=self.channels)
        return F.conv2d(x, self.kernel, padding=half, groups=self.channels)

    def update(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, F, H, W)`` → ``(B, C, H, W)``: 1×1 convolutions with ReLU between them."""
        h = features
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = F.conv2d(h, w, b)
            if i < last:
                h = F.relu(h)
        return h

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One step: ``(B, C, H, W)`` → ``(B, C, H, W)``."""
        if self.alive_masking:
            pre = self.alive(x)
        dx = self.update(self.perceive(x))
        if self.update_tanh:
            dx = torch.tanh(dx)
        if self.fire_rate < 1.0:
            b, _, h, w = x.shape
            fire = torch.rand(b, 1, h, w, generator=generator, device=x.device, dtype=x.dtype)
            dx = dx * (fire <= self.fire_rate).float()
        x = x + dx
        if self.alive_masking:
            x = x * pre * self.alive(x)
        return x

    def rollout(self, x: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Run ``steps`` steps from ``x`` ``(B, C, H, W)``."""
        x = x.contiguous()
        for _ in range(steps):
            x = self(x, generator)
        return x


def reference_for(model: NCA) -> ReferenceNCA:
    """The reference with ``model``'s weights, on its device; raises :class:`NoReference` if there is none."""
    device = next(model.parameters()).device
    return ReferenceNCA(model).to(device)
