"""Device choice: ``auto`` picks CUDA, then MPS, then the CPU; and the engine ``--engine auto`` picks on it."""

from __future__ import annotations

import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available")
    return device


def auto_engine(device: torch.device | str) -> str:
    """The step engine ``--engine auto`` runs on ``device`` (one of :data:`ncacli.engine.nca.ENGINES`).

    The CPU: ``active``, measured faster there (``benchmarks/NOTES.md``). CUDA and MPS: ``reference``, the dense
    step, until a GPU measurement says otherwise: the active step's per-step ``nonzero()`` synchronises the
    device, and its dense-fallback thresholds were tuned on a 2-core CPU. ``benchmarks/gpu_check.py`` measures
    both engines on CUDA for that decision.
    """
    return "active" if torch.device(device).type == "cpu" else "reference"
