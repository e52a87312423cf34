"""``nca grow``: run a model from its seed or from a state."""

from __future__ import annotations

from typing import Optional

import typer

from ncacli.cli.common import (
    background_of,
    console,
    emit_json,
    engine_option,
    load,
    read_state,
    wants_state,
    write_picture_or_state,
)


def grow(
    model_path: str = typer.Argument(..., metavar="MODEL", help="Model file (or - for stdin)."),
    steps: int = typer.Option(200, "--steps", "-n", min=0, help="Steps to run."),
    out: str = typer.Option(..., "--out", "-o", help="Output: .png picture, .safetensors state, or - (state)."),
    from_state: Optional[str] = typer.Option(None, "--from", help="Start from this state file (- for stdin)."),
    batch: int = typer.Option(1, "--batch", min=1, help="Grow this many samples from the seed."),
    size: Optional[str] = typer.Option(None, "--grid", help="Grid size N or HxW when growing from the seed."),
    seed: int = typer.Option(0, "--seed", help="Random seed for the fire masks."),
    condition: Optional[str] = typer.Option(
        None, "--condition", "-c", help="Conditional models: the class to grow, an index or a name (default 0)."
    ),
    condition_map: Optional[str] = typer.Option(
        None, "--condition-map", help="Conditional models: an image whose brightness picks each cell's class."
    ),
    fmt: Optional[str] = typer.Option(None, "--format", help="png or state (default from --out)."),
    transparent: bool = typer.Option(False, "--transparent", help="Keep alpha in the PNG instead of white."),
    scale: int = typer.Option(1, "--scale", min=1, help="Upscale the PNG by this factor (nearest)."),
    device_name: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps."),
    engine: str = engine_option(),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout (not with --out -)."),
) -> None:
    """Grow a pattern: from the model's seed, or on from a state (`--from`)."""
    from ncacli.cli.common import condition_of, parse_grid

    as_state = wants_state(out, fmt)
    if model_path == "-" and from_state == "-":
        from ncacli.errors import UsageError

        raise UsageError("only one of MODEL and --from can be read from stdin")
    m = load(model_path, device_name, engine)
    if m.spec.task.name == "classify":
        from ncacli.errors import UsageError

        raise UsageError(f"{model_path}: a classifier runs on an input; show it with `nca render MODEL out.gif`")
    cfg = m.nca.config
    if from_state is not None:
        state, start = read_state(from_state, cfg.channels)
    else:
        grid = None if size is None else parse_grid(size)
        state, start = m.seed(batch, grid, seed), 0
    cond = condition_of(m.nca, m.spec.task.classes, tuple(state.shape[2:]), condition, condition_map)
    state = m.grow(steps, state, seed, None if cond is None else cond.to(m.device)).cpu()
    kind = write_picture_or_state(out, state, start + steps, transparent, scale, as_state, background_of(m.spec))
    # without alive masking (textures) alpha is one more hidden channel: no cell is "dead"
    alive = int((state[:, 3] > cfg.alive_threshold).sum()) if cfg.alive_masking else None
    summary = {
        "out": out,
        "kind": kind,
        "steps": steps,
        "step": start + steps,
        "shape": list(state.shape),
        "alive_cells": alive,
    }
    if json_out and out != "-":
        emit_json(summary)
    else:
        cells = f", {alive} alive cells" if alive is not None else ""
        console.print(f"grew {steps} steps → {out} ({kind}{cells})", highlight=False)
