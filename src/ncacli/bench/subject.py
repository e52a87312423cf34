"""What ``nca benchmark`` times: a model file's NCA from its own grown pattern, or the Distill architecture."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


def subject(model_path: str | None, device: torch.device, seed: int, start: str) -> tuple[Any, str, Any]:
    """``(model, where it came from, start states)``: ``model_path``'s (grown from its own seed), or the Distill
    architecture with small random weights. A model with a condition is refused in one line."""
    from ncacli.bench.states import start_for
    from ncacli.bench.suites import trained_like

    if model_path is None:
        model = trained_like(seed=seed).to(device)
        source = "Distill ModelConfig, random weights (last layer ~ N(0, 0.02))"
        return model, source, start_for(start, model, None, trained=False)
    from ncacli.api import load
    from ncacli.errors import NcaError

    loaded = load(model_path, device, "reference")
    if loaded.nca.config.condition_channels:  # a class, an input image: what the model reads beside its state
        raise NcaError(f"{model_path}: a conditional model; nca benchmark times models without a condition")
    starts = start_for(start, loaded.nca, lambda b, h, w: loaded.seed(b, (h, w)).cpu(), trained=True)
    return loaded.nca, model_path, starts


@contextlib.contextmanager
def threads_set(threads: int | None) -> Iterator[None]:
    """torch's thread count set to ``threads`` (None: as it is) for the block, and put back after (a benchmark
    run in-process, by a test or a script, leaves the caller's setting alone)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
