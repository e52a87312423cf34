"""Checks of the fused Triton step on an NVIDIA GPU: agreement with the reference step, and inference speed.

    python benchmarks/cuda_checks.py [--grid 64] [--batch 64] [--steps 32] [--repeats 5] [--tf32] [--sweep]

The model has the Distill architecture (16 channels, ``sobel``, 128 hidden) with random weights, the last layer
included (a fresh model's is zero and would leave the state unchanged). First the fused rollout is compared with
a loop of reference steps on CUDA, both drawing their fire masks from ``CounterRandom``, with TF32 off so both
compute in float32: the maximum absolute difference after ``--steps`` steps. Then ``--steps`` steps of a
``--batch`` × ``--grid`` × ``--grid`` state are timed (median of ``--repeats``, the GPU synchronised at both ends)
with the reference engine, the active engine, the fused step launched eagerly, and the fused step replayed from a
CUDA graph (its capture included: every call captures afresh). Prints a Markdown table of cell-steps/s and the
speed-up over the reference engine, then one JSON line. Exits with one line when there is no CUDA device.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import torch


def distill_model(device: str) -> torch.nn.Module:
    from ncacli.engine import NCA, ModelConfig

    torch.manual_seed(0)
    model = NCA(ModelConfig(channels=16, hidden=128, perception="sobel")).to(device)
    with torch.no_grad():
        for p in model.update.parameters():
            p.normal_(0.0, 0.1)
    return model.eval()


def random_state(batch: int, grid: int, device: str) -> torch.Tensor:
    """Random values, alpha nonzero in about a sixth of the cells: alive, dying and dead cells."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, 16, grid, grid, generator=g) - 0.5
    x[:, 3] = torch.rand(batch, grid, grid, generator=g) * 0.5 * (torch.rand(batch, grid, grid, generator=g) < 0.17)
    return x.to(device).contiguous(memory_format=torch.channels_last)


def timed(fn: Callable[[], torch.Tensor], repeats: int) -> float:
    """Median seconds of ``fn()`` after one warm-up call (compiles the kernels)."""
    fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(model: torch.nn.Module, steps: int, batch: int, grid: int) -> dict:
    """Fused rollout vs reference steps, TF32 off: differences after one step and after ``steps`` steps."""
    from ncacli.engine import CounterRandom
    from ncacli.engine.fused import fused_rollout, fused_step

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        x = random_state(batch, grid, "cuda")
        with torch.no_grad():
            one = fused_step(model, x, CounterRandom(3))
            ref_one = model.reference_step(x, CounterRandom(3))
            g_fused, g_ref = CounterRandom(3), CounterRandom(3)
            fused = fused_rollout(model, x, steps, g_fused)  # a CUDA graph from GRAPH_MIN_STEPS steps on
            eager = fused_rollout(model, x, steps, CounterRandom(3), cuda_graph=False)
            ref = x
            for _ in range(steps):
                ref = model.reference_step(ref, g_ref)
        torch.cuda.synchronize()
        return {
            "step_max_abs_diff": (one - ref_one).abs().max().item(),
            "max_abs_diff": (fused - ref).abs().max().item(),
            "graph_vs_eager_max_abs_diff": (fused - eager).abs().max().item(),
            "max_abs_state": ref.abs().max().item(),
            "relative_diff": ((fused - ref).abs().max() / ref.abs().max().clamp_min(1.0)).item(),
            "cells_off_by_1e-3": ((fused - ref).abs().amax(1) > 1e-3).sum().item(),  # e.g. an alive mask flipped
            "alive_fraction": (ref[:, 3:4] > model.config.alive_threshold).float().mean().item(),
            "calls_equal": g_fused.calls == g_ref.calls,
        }
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--block", type=int, default=None, help="cells per program (default: the module's)")
    parser.add_argument("--tf32", action="store_true", help="also time the fused step with TF32 tl.dot")
    parser.add_argument("--sweep", action="store_true", help="also time the graphed fused step at blocks 32..256")
    opts = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("cuda_checks: no CUDA device here; run this on a machine with an NVIDIA GPU", file=sys.stderr)
        raise SystemExit(1)
    from ncacli.engine import CounterRandom, make_seed
    from ncacli.engine.fused import DEFAULT_BLOCK, fused_rollout, fused_supported

    model = distill_model("cuda")
    reason = fused_supported(model)
    if reason is not None:
        print(f"cuda_checks: the fused step cannot run the Distill model: {reason}", file=sys.stderr)
        raise SystemExit(1)
    block = opts.block or DEFAULT_BLOCK
    check = compare(model, opts.steps, min(opts.batch, 8), opts.grid)

    x = make_seed(opts.batch, 16, opts.grid, opts.grid, device="cuda").contiguous(memory_format=torch.channels_last)
    steps = opts.steps

    def engine(name: str) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            model.engine = name
            with torch.no_grad():
                return model.rollout(x, steps, CounterRandom(0))

        return run

    def fused(graph: bool, precision: str = "ieee", blk: int = block) -> Callable[[], torch.Tensor]:
        return lambda: fused_rollout(
            model, x, steps, CounterRandom(0), cuda_graph=graph, block=blk, precision=precision
        )

    runs: dict[str, Callable[[], torch.Tensor]] = {
        "reference": engine("reference"),
        "active": engine("active"),
        "fused": fused(False),
        "fused+graph": fused(True),
    }
    if opts.tf32:
        runs["fused+graph tf32"] = fused(True, "tf32")
    if opts.sweep:
        for blk in (32, 64, 128, 256):
            runs[f"fused+graph block {blk}"] = fused(True, blk=blk)
    seconds = {name: timed(fn, opts.repeats) for name, fn in runs.items()}
    model.engine = "active"
    cell_steps = opts.batch * opts.grid * opts.grid * steps
    rows = {
        name: {
            "seconds": s,
            "cell_steps_per_s": cell_steps / s,
            "speedup_vs_reference": seconds["reference"] / s,
        }
        for name, s in seconds.items()
    }
    device = torch.cuda.get_device_name()
    print(f"{device}: Distill model, batch {opts.batch}, {opts.grid}×{opts.grid}, {steps} steps, block {block}")
    print(
        f"fused vs reference after {steps} steps: max |diff| {check['max_abs_diff']:.3g}, "
        f"relative {check['relative_diff']:.3g}, {check['cells_off_by_1e-3']} cells off by > 1e-3 "
        f"(one step {check['step_max_abs_diff']:.3g}; states up to {check['max_abs_state']:.3g}; "
        f"graph vs eager {check['graph_vs_eager_max_abs_diff']:.3g}; generators agree: {check['calls_equal']})"
    )
    print()
    print("| run | ms | cell-steps/s | × reference |")
    print("|---|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['seconds'] * 1e3:.2f} | {row['cell_steps_per_s']:.3g} | "
            f"{row['speedup_vs_reference']:.2f} |"
        )
    ratios = {
        "fused_vs_reference": seconds["reference"] / seconds["fused"],
        "graph_vs_reference": seconds["reference"] / seconds["fused+graph"],
        "graph_vs_fused": seconds["fused"] / seconds["fused+graph"],
    }
    print(
        json.dumps(
            {
                "device": device,
                "batch": opts.batch,
                "grid": opts.grid,
                "steps": steps,
                "block": block,
                "check": check,
                "runs": rows,
                "ratios": ratios,
            }
        )
    )


if __name__ == "__main__":
    main()
