"""Time the engine beside a plain PyTorch reference of the same Distill step, in one process.

Distill configuration: batch 8, 72×72 grid, 16 channels, identity + Sobel perception, 48→128→16 update,
fire rate 0.5, alive masking. Measures one training iteration (rollout + backward + Adam step) and a
96-step inference rollout, and prints engine/reference time ratios (below 1.0: the engine is faster).

    python benchmarks/train_step.py [--steps 80] [--repeats 3] [--json]

Run it on a quiet machine: a second busy process on a 2-core CPU makes any timing worthless.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

from ncacli.engine import NCA, ModelConfig, make_seed


class Reference(torch.nn.Module):
    """The straightforward port of the Distill step: NCHW depthwise Sobel, 1×1 convs, float masks."""

    def __init__(self, model: NCA) -> None:
        super().__init__()
        c = model.config.channels
        ident = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
        sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
        self.register_buffer("kernel", torch.stack([ident, sobel_x, sobel_x.T])[:, None].repeat(c, 1, 1, 1))
        self.w1 = torch.nn.Parameter(model.update.net[0].weight.detach().contiguous().clone())
        self.b1 = torch.nn.Parameter(model.update.net[0].bias.detach().clone())
        self.w2 = torch.nn.Parameter(model.update.net[2].weight.detach().contiguous().clone())
        self.b2 = torch.nn.Parameter(model.update.net[2].bias.detach().clone())
        self.channels = c

    def alive(self, x: torch.Tensor) -> torch.Tensor:
        return (F.max_pool2d(x[:, 3:4], 3, 1, 1) > 0.1).float()

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        pre = self.alive(x)
        y = F.conv2d(x, self.kernel, padding=1, groups=self.channels)
        dx = F.conv2d(F.relu(F.conv2d(y, self.w1, self.b1)), self.w2, self.b2)
        mask = (torch.rand(x.shape[0], 1, x.shape[2], x.shape[3], generator=generator) <= 0.5).float()
        x = x + dx * mask
        return x * pre * self.alive(x)

    def rollout(self, x: torch.Tensor, steps: int, generator: torch.Generator) -> torch.Tensor:
        for _ in range(steps):
            x = self(x, generator)
        return x


def trained_like(seed: int = 0) -> NCA:
    """A model with non-zero weights, so the pattern grows and the work is realistic."""
    torch.manual_seed(seed)
    model = NCA(ModelConfig())
    with torch.no_grad():
        model.update.net[2].weight.normal_(0, 0.02)
        model.update.net[2].bias.normal_(0, 0.02)
    return model


def time_it(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=80, help="rollout steps per training iteration (64–96)")
    parser.add_argument("--infer-steps", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=72)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    engine = trained_like()
    reference = Reference(engine)
    seed = make_seed(args.batch, 16, args.size, args.size)
    target = torch.rand(4, args.size, args.size)

    # same weights, same generator → the same rollout (up to float rounding of the layouts)
    with torch.no_grad():
        a = engine.rollout(seed, 32, torch.Generator().manual_seed(0))
        b = reference.rollout(seed, 32, torch.Generator().manual_seed(0))
    max_diff = float((a - b).abs().max())

    def train_iteration(model):
        opt = torch.optim.Adam(model.parameters(), lr=1e-9)

        def run():
            out = model.rollout(seed, args.steps, torch.Generator().manual_seed(1))
            loss = ((out[:, :4] - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            for p in model.parameters():
                p.grad /= p.grad.norm() + 1e-8
            opt.step()

        return run

    def inference(model):
        def run():
            with torch.no_grad():
                model.rollout(seed, args.infer_steps, torch.Generator().manual_seed(2))

        return run

    results = {}
    for name, make in (("train_iteration", train_iteration), ("inference_rollout", inference)):
        ref = time_it(make(reference), args.repeats)
        eng = time_it(make(engine), args.repeats)
        steps = args.steps if name == "train_iteration" else args.infer_steps
        cells = args.batch * args.size * args.size * steps
        results[name] = {
            "reference_s": statistics.median(ref),
            "engine_s": statistics.median(eng),
            "reference_spread_s": max(ref) - min(ref),
            "engine_spread_s": max(eng) - min(eng),
            "ratio": statistics.median(eng) / statistics.median(ref),
            "engine_cell_steps_per_s": cells / statistics.median(eng),
            "steps": steps,
        }
    report = {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "batch": args.batch,
        "grid": args.size,
        "max_abs_diff": max_diff,
        **results,
    }
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"cpu, {report['threads']} threads, torch {torch.__version__}, batch {args.batch}, "
        f"{args.size}×{args.size}; engine vs reference max |diff| after 32 steps: {max_diff:.2e}"
    )
    for name, r in results.items():
        print(
            f"{name:18s} reference {r['reference_s']:.3f} s  engine {r['engine_s']:.3f} s  "
            f"ratio {r['ratio']:.2f}  ({r['engine_cell_steps_per_s'] / 1e6:.2f} M cell-steps/s, {r['steps']} steps)"
        )


if __name__ == "__main__":
    main()
