"""The benchmark's configurations (suites) and the loop that measures each one, engine beside reference.

Before each measurement the loop estimates its peak memory and run time, from the nearest configuration
already measured (train memory and all run times grow with batch × H × W × steps, inference memory with
batch × H × W) or, for the first one, from a count of the tensors a step keeps and a one-step probe, and
marks it OOM or skipped instead of running it when it would not fit.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ncacli import __version__
from ncacli.bench.case import Case
from ncacli.bench.measure import MB, Measurement, free_memory, inference_run, is_oom, measure, timed, train_run
from ncacli.bench.reference import NoReference, reference_for
from ncacli.bench.states import Start, alive_fraction
from ncacli.bench.system import LoadSampler, device_name, memory_available, memory_probe
from ncacli.bench.table6 import parameters_at_inference
from ncacli.engine import NCA, ModelConfig, make_seed

DEFAULT_SIZES = (64, 128, 256, 512)
MEMORY_SAFETY = 0.8  # of MemAvailable, on the CPU
LOAD_WARNING_CORES = 0.25
PHASES = ("train", "inference")


DISTILL = Case(
    "distill", "distill 72×72", 72, 72, 8, 80, 8, 96,
    "Distill Growing NCA: batch 8, 72×72, train rollouts of 64–96 steps (80, the mean), grow 96 steps",
)  # fmt: skip
TABLE6 = Case(
    "ncatorch-table6", "table6 64×64", 64, 64, 16, 32, 64, 32,
    "the NCAtorch review Appendix A.6 Table 6: 64×64, train batch 16 × 32 steps, inference batch 64 × 32 steps",
)  # fmt: skip


def scaling_cases(sizes: tuple[int, ...] = DEFAULT_SIZES) -> list[Case]:
    """The NCAtorch review §3.1.5 Table 2: square grids, batch 1, steps = W/2 for training and inference."""
    source = "the NCAtorch review §3.1.5 Table 2: batch 1, steps = W/2 (centre to edge)"
    return [
        Case("scaling", f"scaling {w}×{w}", w, w, 1, max(1, w // 2), 1, max(1, w // 2), source, time_limited=True)
        for w in sizes
    ]


# The built-in suites, registered as entry points of ncacli.suites (a plugin adds its own the same way):
# each takes the scaling suite's grid widths and returns its cases.
def standard_cases(sizes: tuple[int, ...] = DEFAULT_SIZES) -> list[Case]:
    """distill + ncatorch-table6."""
    return [DISTILL, TABLE6]


def distill_cases(sizes: tuple[int, ...] = DEFAULT_SIZES) -> list[Case]:
    return [DISTILL]


def table6_cases(sizes: tuple[int, ...] = DEFAULT_SIZES) -> list[Case]:
    return [TABLE6]


def _table6_subjects(device: torch.device, seed: int) -> list[tuple[str, nn.Module]]:
    from ncacli.bench.table6 import subjects

    return subjects(device, seed)


# what the suite times when no model file is named: the rows of the review's Table 6, beside its figures
table6_cases.subjects = _table6_subjects  # type: ignore[attr-defined]


def all_cases(sizes: tuple[int, ...] = DEFAULT_SIZES) -> list[Case]:
    return [DISTILL, TABLE6, *scaling_cases(sizes)]


def cases_for(suite: str, sizes: tuple[int, ...] | None = None) -> list[Case]:
    """The cases of ``suite``; ``sizes`` (``--sizes``) when given, else the suite's own default sizes."""
    make = SUITES.get(suite, "suite")
    return make(sizes) if sizes is not None else make()


from ncacli.registry import SUITES  # noqa: E402


def custom_case(size: int | None = None, batch: int | None = None, steps: int | None = None) -> Case:
    """One configuration; what is not given comes from Distill (72×72, batch 8, 80 steps to train, 96 to grow)."""
    size = size or DISTILL.height
    batch = batch or DISTILL.train_batch
    train_steps, infer_steps = (steps, steps) if steps else (DISTILL.train_steps, DISTILL.infer_steps)
    name = f"custom {size}×{size}"
    return Case("custom", name, size, size, batch, train_steps, batch, infer_steps, "--size/--batch/--steps")


def trained_like(config: ModelConfig | None = None, seed: int = 0) -> NCA:
    """A fresh model whose zero-initialised parameters (the update's last layer) get small random values,
    so a rollout changes the pattern as a trained model would. The global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = NCA(config or ModelConfig())
        with torch.no_grad():
            for p in model.parameters():
                if not p.any():
                    p.normal_(0, 0.02)
    return model


def analytic_bytes(
    config: ModelConfig,
    features_per_channel: int,
    phase: str,
    batch: int,
    cells: int,
    steps: int,
    hidden: bool = True,
) -> int:
    """A rough floor for the peak memory in bytes: a step's float32 activations per cell (state, features,
    hidden layers), kept for backward over all steps when training. On the CPU the dense step measured 1.1–1.3×
    this to train and 1.3–3.7× in inference (Distill, Table 6, grids 64–512). ``features_per_channel = 0``
    and ``hidden = False``: the state alone (the active engine keeps activations of the living cells only)."""
    per_step = config.channels * (features_per_channel + 1) + (config.hidden * config.depth if hidden else 0)
    return 4 * batch * cells * per_step * (steps if phase == "train" else 1)


class History:
    """Seconds per run and peak bytes measured so far, per (implementation, phase), to extrapolate from."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], list[tuple[int, float]]] = {}
        self.peaks: dict[tuple[str, str], list[tuple[int, int]]] = {}
        self.oom: dict[tuple[str, str], int] = {}

    def add(self, key: tuple[str, str], work: int, memory_work: int, result: Measurement) -> None:
        if result.status == "oom" and not result.estimate:
            self.oom[key] = min(memory_work, self.oom.get(key, memory_work))
        if result.ok:
            self.seconds.setdefault(key, []).append((work, result.median))
            if result.peak:
                self.peaks.setdefault(key, []).append((memory_work, result.peak))

    @staticmethod
    def _nearest(records: list[tuple[int, float]], work: int) -> float | None:
        if not records:
            return None
        near, value = min(records, key=lambda r: abs(math.log(work / r[0])))
        return value * work / near

    def estimate_seconds(self, key: tuple[str, str], work: int) -> float | None:
        return self._nearest(self.seconds.get(key, []), work)

    def estimate_bytes(self, key: tuple[str, str], memory_work: int) -> float | None:
        return self._nearest(self.peaks.get(key, []), memory_work)


def _size(n: float) -> str:
    return f"{n / 1024**3:.1f} GB" if n >= 1024**3 else f"{n / MB:.1f} MB"


def _probe_seconds(module: nn.Module, seed: torch.Tensor, device: torch.device) -> float:
    """Seconds of one inference step at this size (the faster of two)."""
    run = inference_run(module, seed, 1, 0)
    return min(timed(run, device)[0] for _ in range(2))


@dataclass
class Settings:
    device: torch.device
    repeats: int
    warmup: int
    max_seconds: float | None
    max_memory: int | None  # bytes; None: 0.8 × MemAvailable on the CPU, unlimited elsewhere
    seed: int = 0
    checkpoint: int = 0  # the engine's training rollouts keep the state every N steps (gradient checkpointing)
    start: Start | None = None  # (batch, H, W) → the state rollouts start from; None: the seed
    start_name: str = "seed"
    engine: str = "active"  # the engine's step: "active" or "reference" (ncacli.engine.NCA.engine)


class CheckpointedRollout(nn.Module):
    """The engine with gradient checkpointing of its rollout every ``every`` steps (same states and gradients)."""

    def __init__(self, model: NCA, every: int) -> None:
        super().__init__()
        self.model = model
        self.every = every
        self.perceive = model.perceive

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.model(x, generator)

    def rollout(self, x: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.model.rollout(x, steps, generator, checkpoint=self.every)


class Runner:
    """Measures cases for the engine and (where there is one) the reference, keeping a history to plan by."""

    def __init__(self, model: NCA, reference: nn.Module | None, settings: Settings, progress) -> None:
        self.model = model
        model.engine = settings.engine
        engine = CheckpointedRollout(model, settings.checkpoint) if settings.checkpoint else model
        self.impls: dict[str, nn.Module] = {"engine": engine}
        if reference is not None:
            self.impls["reference"] = reference
        self.settings = settings
        self.probe = memory_probe(settings.device)
        self.history = History()
        self.progress = progress or (lambda text: None)
        self._autoencoders: dict[int, nn.Module] = {}

    def budget(self) -> tuple[float | None, str]:
        s = self.settings
        if s.max_memory is not None:
            return s.max_memory, "--max-memory"
        if s.device.type == "cpu":
            available = memory_available()
            if available is not None:
                return MEMORY_SAFETY * available, "0.8 × MemAvailable"
        return None, "none"

    def plan(self, name: str, phase: str, case: Case, seed: torch.Tensor) -> Measurement | None:
        """A measurement decided without running (OOM or skipped), or None to run it."""
        s, key = self.settings, (name, phase, case.latent, self.checkpoint_of(case))  # like extrapolates from like
        batch, steps = case.phase(phase)
        cells = case.height * case.width
        work = batch * cells * steps
        memory_work = work if phase == "train" else batch * cells
        if key in self.history.oom and memory_work >= self.history.oom[key]:
            return Measurement("oom", "OOM (at a smaller size)")
        budget, _ = self.budget()
        if not isinstance(self.model, NCA):  # another architecture: estimated from what was measured only
            need = 0
        elif name == "engine" and s.engine == "active":  # keeps the living cells' activations: the state is its floor
            need = analytic_bytes(self.model.config, 0, phase, batch, cells, steps, hidden=False)
        else:
            features = self.model.perceive.features_per_channel
            need = analytic_bytes(self.model.config, features, phase, batch, cells, steps)
        need = max(need, self.history.estimate_bytes(key, memory_work) or 0)
        if budget is not None and need > budget:
            note = f"OOM (estimated {_size(need)} > {_size(budget)} available)"
            return Measurement("oom", note, estimate={"bytes": need})
        if not s.max_seconds or not case.time_limited:
            return None
        per_run = self.history.estimate_seconds(key, work)
        if per_run is None:
            try:
                probe = _probe_seconds(self.impls_for(case)[name], seed, s.device)
                per_run = probe * steps * (3 if phase == "train" else 1)
            except Exception as exc:
                if not is_oom(exc):
                    raise
            if per_run is None:  # the one-step probe ran out of memory
                free_memory(s.device, collect=True)
                return Measurement("oom", "OOM")
        total = per_run * (s.warmup + s.repeats)
        if total > s.max_seconds:
            shown = f"{total:.0f}" if total >= 10 else f"{total:.2g}"
            note = f"skipped (estimated {shown} s)"
            return Measurement("skipped", note, estimate={"seconds": total, "bytes": need})
        return None

    def row(self, case: Case, phase: str) -> dict[str, Any]:
        """Measure one phase of one case for every implementation → the JSON row."""
        s = self.settings
        batch, steps = case.phase(phase)
        cells = case.height * case.width
        work = batch * cells * steps
        channels = self.model.config.channels
        start = s.start or (lambda b, h, w: make_seed(b, channels, h, w))
        seed = start(batch, case.height, case.width).to(s.device).contiguous(memory_format=torch.channels_last)
        target_gen = torch.Generator().manual_seed(s.seed)
        f = case.latent or 1  # a latent case's loss is on the decoded picture
        target = torch.rand(4, case.height * f, case.width * f, generator=target_gen).to(s.device)
        decided: dict[str, Measurement] = {}
        runs = {}
        for name, module in self.impls_for(case).items():
            self.progress(f"{case.name} {phase}: {name}")
            verdict = self.plan(name, phase, case, seed)
            if verdict is not None:
                decided[name] = verdict
            elif phase == "train":
                runs[name] = train_run(copy.deepcopy(module), seed, target, steps, s.seed)
            else:
                runs[name] = inference_run(module, seed, steps, s.seed)
        self.progress(f"{case.name} {phase}: measuring {' and '.join(runs) or 'nothing'}")
        sampler = LoadSampler()
        results = measure(runs, s.device, s.repeats, s.warmup, self.probe, decided)
        load = sampler.result()
        runs.clear()
        free_memory(s.device)
        memory_work = work if phase == "train" else batch * cells
        for name, result in results.items():
            self.history.add((name, phase, case.latent, self.checkpoint_of(case)), work, memory_work, result)
        engine, ref = results["engine"], results.get("reference")
        both = engine.ok and ref is not None and ref.ok
        diff = None
        if both and engine.first is not None and ref.first is not None:
            diff = float((engine.first.float() - ref.first.float()).abs().max())
        alive = None
        if engine.ok and isinstance(self.model, NCA):
            alive = alive_fraction(self.model, seed, steps, torch.Generator(device=s.device).manual_seed(s.seed))
        extra = {}
        if case.latent:
            ae = self.autoencoder(case.latent)
            extra["latent"] = {"factor": case.latent, "picture": [case.height * f, case.width * f],
                               "autoencoder": ae.config.to_dict(),
                               "autoencoder_parameters": sum(p.numel() for p in ae.parameters())}  # fmt: skip
        return {
            "suite": case.suite,
            "case": case.name,
            "phase": phase,
            "source": case.source,
            **extra,
            "checkpoint": self.checkpoint_of(case) if phase == "train" else 0,
            "model": self.model.config.to_dict(),
            "parameters": parameters_at_inference(self.model),
            "batch": batch,
            "grid": [case.height, case.width],
            "steps": steps,
            "repeats": s.repeats,
            "warmup": s.warmup,
            "cell_steps": work,
            "engine": engine.to_dict(steps, work),
            "reference": ref.to_dict(steps, work) if ref is not None else None,
            "time_ratio": engine.median / ref.median if both else None,
            "memory_ratio": engine.peak / ref.peak if both and engine.peak and ref.peak else None,
            "max_abs_diff": diff,
            "alive_fraction": alive,
            "other_process_load": load["cores"],
        }

    def checkpoint_of(self, case: Case) -> int:
        return self.settings.checkpoint if case.checkpoint is None else case.checkpoint

    def autoencoder(self, factor: int):
        from ncacli.bench.latent import benchmark_autoencoder

        if factor not in self._autoencoders:
            self._autoencoders[factor] = benchmark_autoencoder(factor, self.settings.device)
        return self._autoencoders[factor]

    def impls_for(self, case: Case) -> dict[str, nn.Module]:
        """The implementations a case runs: the engine checkpointed as the case says, and a latent case's
        rollouts each followed by the decoder."""
        impls = dict(self.impls)
        every = self.checkpoint_of(case)
        if every != self.settings.checkpoint:
            impls["engine"] = CheckpointedRollout(self.model, every) if every else self.model
        if case.latent:
            from ncacli.bench.latent import LatentRollout

            ae = self.autoencoder(case.latent)
            impls = {name: LatentRollout(module, ae) for name, module in impls.items()}
        return impls

    def prime(self) -> None:
        """One tiny train and inference run of each implementation: one-off library start-up stays out of
        the first measurement."""
        s = self.settings
        seed = make_seed(1, self.model.config.channels, 8, 8, device=s.device)
        target = torch.zeros(4, 8, 8, device=s.device)
        for module in self.impls.values():
            train_run(copy.deepcopy(module), seed, target, 2, 0)()
            inference_run(module, seed, 2, 0)()
        free_memory(s.device)


def load_warning(load: dict[str, Any], device: torch.device) -> str | None:
    """One line when other processes kept more than a quarter of a core busy during a CPU benchmark."""
    cores = load.get("cores")
    if device.type != "cpu" or cores is None or cores <= LOAD_WARNING_CORES:
        return None
    hint = "; fewer --threads may help" if torch.get_num_threads() > 1 else ""
    return (
        f"warning: other processes kept {cores:.1f} of {os.cpu_count()} cores busy during the benchmark; "
        f"CPU timings are unreliable (a second busy process can make a rollout 10–20× slower{hint})"
    )


def run_benchmark(
    model: NCA,
    cases: list[Case],
    settings: Settings,
    reference: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure every case, train and inference, for the engine and the reference → the JSON report."""
    note = "reference left out (--no-reference)"
    ref = None
    if reference:
        try:
            ref = reference_for(model)
            note = None
        except NoReference as exc:
            note = str(exc)
    runner = Runner(model, ref, settings, progress)
    overall = LoadSampler()
    runner.prime()
    rows = [runner.row(case, phase) for case in cases for phase in PHASES]
    load = overall.result()
    budget, budget_source = runner.budget()
    dev = settings.device
    warning = load_warning(load, dev)
    return {
        "ncacli": __version__,
        "device": str(dev),
        "device_name": device_name(dev),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "reference": {"available": ref is not None, "note": note},
        "timing": "torch.cuda.Event, synchronized" if dev.type == "cuda" else "time.perf_counter, synchronized",
        "spread": "min-max over the timed runs",
        "max_abs_diff": "engine vs reference, same weights and fire masks: final state (inference), loss (train)",
        "memory": runner.probe.method,
        "memory_budget_mb": budget / MB if budget is not None else None,
        "memory_budget_source": budget_source,
        "max_seconds": settings.max_seconds,
        "checkpoint": settings.checkpoint,
        "engine": settings.engine,
        "start": settings.start_name,
        "other_process_load": load,
        "warnings": [warning] if warning else [],
        "rows": rows,
    }
