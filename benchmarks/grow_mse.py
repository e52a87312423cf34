"""Mean squared error (premultiplied RGBA) between a model's target and its growth from the seed.

    python benchmarks/grow_mse.py runs/<run>/model.safetensors --steps 200 --trials 8

The target is rebuilt from the model's provenance (emoji or image path, with the run's size and
padding from its config.toml when it sits in a run directory). `nca evaluate` will supersede this.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

import torch

from ncacli.cli.common import seed_state
from ncacli.io.images import load_target
from ncacli.io.model_file import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()

    model, provenance = load_model(args.model)
    run_config = Path(args.model).resolve().parent
    run_config = next(
        (d / "config.toml" for d in (run_config, run_config.parent) if (d / "config.toml").exists()), None
    )
    config = tomllib.loads(run_config.read_text()) if run_config else {}
    target, _ = load_target(
        config.get("target", ""), config.get("emoji", "🦎"), config.get("size", 40), config.get("padding", 16)
    )
    errors = []
    with torch.no_grad():
        for trial in range(args.trials):
            state = model.rollout(seed_state(model, provenance), args.steps, torch.Generator().manual_seed(trial))
            errors.append(float(((state[0, :4] - target) ** 2).mean()))
    mean = sum(errors) / len(errors)
    std = (sum((e - mean) ** 2 for e in errors) / len(errors)) ** 0.5
    print(
        json.dumps(
            {
                "model": args.model,
                "iterations": provenance.get("iterations"),
                "steps": args.steps,
                "trials": args.trials,
                "mse_mean": mean,
                "mse_std": std,
            }
        )
    )


if __name__ == "__main__":
    main()
