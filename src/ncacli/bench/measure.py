"""Timing and peak memory of one workload (a training iteration or an inference rollout) per implementation."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ncacli.bench.system import MemoryProbe

Run = Callable[[], torch.Tensor]
MB = 1024 * 1024


def train_run(model: nn.Module, seed: torch.Tensor, target: torch.Tensor, steps: int, fire_seed: int) -> Run:
    """One training iteration: rollout, MSE to ``target`` ``(4, H, W)``, backward, per-parameter
    gradient normalisation (as the trainer does) and an Adam step. Returns the loss. A model trained against a
    critic (``adversarial(out, target)``: the critic's own step, then the model's term) adds that term."""
    # A tiny learning rate: the step costs the same, and the weights stay put, so every repeat does the same work.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-9)

    def run() -> torch.Tensor:
        generator = torch.Generator(device=seed.device).manual_seed(fire_seed)
        out = model.rollout(seed, steps, generator)
        loss = ((out[:, :4] - target) ** 2).mean()
        adversarial = getattr(model, "adversarial", None)  # a critic's step, and the model's term against it
        if adversarial is not None:
            loss = loss + adversarial(out, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p.grad /= p.grad.norm() + 1e-8
        optimizer.step()
        return loss.detach()

    return run


def inference_run(model: nn.Module, seed: torch.Tensor, steps: int, fire_seed: int) -> Run:
    """A rollout of ``steps`` steps under ``torch.no_grad``. Returns the final state ``(B, C, H, W)``."""

    def run() -> torch.Tensor:
        generator = torch.Generator(device=seed.device).manual_seed(fire_seed)
        with torch.no_grad():
            return model.rollout(seed, steps, generator)

    return run


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(run: Run, device: torch.device) -> tuple[float, torch.Tensor]:
    """``(seconds, output)`` of one run: CUDA events on a GPU, ``perf_counter`` elsewhere."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        out = run()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000, out
    synchronize(device)
    begin = time.perf_counter()
    out = run()
    synchronize(device)
    return time.perf_counter() - begin, out


def is_oom(exc: BaseException) -> bool:
    """An out-of-memory error from any device (CUDA's own class, or the CPU allocator's RuntimeError)."""
    if isinstance(exc, MemoryError | torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("out of memory", "can't allocate memory", "cannot allocate memory")
    )


def free_memory(device: torch.device, collect: bool = False) -> None:
    """Give cached blocks back (CUDA); ``collect`` also runs the garbage collector (slow: ~0.1 s), after an OOM."""
    if collect:
        gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@dataclass
class Measurement:
    """What one implementation did on one workload; ``status`` is ``ok``, ``oom`` or ``skipped``."""

    status: str = "ok"
    note: str | None = None
    times: list[float] = field(default_factory=list)
    peak: int | None = None
    baseline: int | None = None
    first: torch.Tensor | None = None  # the first run's output, to check engine and reference agree
    estimate: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.times)

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    def to_dict(self, steps: int, cell_steps: int) -> dict[str, Any]:
        """The figures for JSON: seconds, ms per NCA step, cell-steps per second, MB."""
        median = self.median
        return {
            "status": self.status,
            "oom": self.status == "oom",
            "note": self.note,
            "median_s": median,
            "min_s": min(self.times) if self.times else None,
            "max_s": max(self.times) if self.times else None,
            "times_s": list(self.times),
            "ms_per_step": median * 1000 / steps if median else None,
            "cell_steps_per_s": cell_steps / median if median else None,
            "peak_mb": self.peak / MB if self.peak is not None else None,
            "baseline_mb": self.baseline / MB if self.baseline is not None else None,
            "estimated_s": self.estimate.get("seconds"),
            "estimated_mb": self.estimate["bytes"] / MB if "bytes" in self.estimate else None,
        }


def measure(
    runs: dict[str, Run],
    device: torch.device,
    repeats: int,
    warmup: int,
    probe: MemoryProbe,
    results: dict[str, Measurement] | None = None,
) -> dict[str, Measurement]:
    """Warm up each run, then time them ``repeats`` times, interleaved (A, B, A, B, …) so a change in the
    machine's load hits both alike. An out-of-memory error marks that run ``oom``; the others go on.
    ``results`` may hold measurements already decided (OOM or skipped); those runs are not started."""
    results = dict(results or {})
    active: dict[str, Run] = {}
    for name, run in runs.items():
        if name in results:
            continue
        result = results[name] = Measurement()
        try:
            for i in range(warmup):
                memory = i == warmup - 1 and not probe.per_run
                if memory:
                    probe.start()
                out = run()
                synchronize(device)
                if memory:
                    result.peak, result.baseline = probe.stop()
                if i == 0:
                    result.first = out.detach()
                del out
            active[name] = run
        except Exception as exc:
            if not is_oom(exc):
                raise
            result.status, result.note, result.first = "oom", "OOM", None
        free_memory(device, collect=name not in active)
    for _ in range(repeats):
        for name, run in list(active.items()):
            result = results[name]
            try:
                if probe.per_run:
                    probe.start()
                seconds, out = timed(run, device)
                if probe.per_run:
                    peak, baseline = probe.stop()
                    if peak is not None and (result.peak is None or peak > result.peak):
                        result.peak, result.baseline = peak, baseline
                if result.first is None:
                    result.first = out.detach()
                del out
                result.times.append(seconds)
            except Exception as exc:
                if not is_oom(exc):
                    raise
                result.status, result.note, result.times = "oom", "OOM", []
                del active[name]
            if name not in active:
                free_memory(device, collect=True)  # outside the handler: its traceback holds the run's tensors
    return results
