"""``nca render``: a GIF or MP4 of the growth from the seed, with optional damage mid-run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ncacli.cli.common import console, device, emit_json, parse_pair


def render(
    model_path: str = typer.Argument(..., metavar="MODEL", help="Model file."),
    out: Path = typer.Argument(..., metavar="OUT", help="out.gif or out.mp4."),
    steps: int = typer.Option(300, "--steps", "-n", min=1, help="Steps to run."),
    fps: float = typer.Option(30.0, "--fps", min=1.0, help="Frames per second."),
    every: int = typer.Option(1, "--every", min=1, help="Keep one frame every N steps."),
    scale: int = typer.Option(4, "--scale", min=1, help="Display pixels per cell (nearest neighbour)."),
    damage_at: Optional[int] = typer.Option(None, "--damage-at", min=1, help="Damage the pattern at this step."),
    shape: str = typer.Option("circle", "--shape", help="Damage shape: circle, square, left, right, top, bottom."),
    center: str = typer.Option("0.5,0.5", "--center", help="Damage centre x,y (fractions of the grid)."),
    radius: float = typer.Option(0.2, "--radius", help="Damage radius (fraction of the grid width)."),
    from_state: Optional[str] = typer.Option(None, "--from", help="Start from this state instead of the seed."),
    seed: int = typer.Option(0, "--seed", help="Random seed for the fire masks."),
    device_name: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Write a video of the NCA growing (and regrowing after `--damage-at`)."""
    import torch

    from ncacli.cli.common import background_of, check_name, read_state, seed_state
    from ncacli.engine import SHAPES, apply_damage, damage_mask
    from ncacli.io.images import to_pixels
    from ncacli.io.model_file import load_model
    from ncacli.io.video import FORMATS, write_video

    if out.suffix.lower() not in FORMATS:
        from ncacli.errors import UsageError

        raise UsageError(f"{out}: unsupported output {out.suffix!r}; use .gif or .mp4")
    check_name("damage shape", shape, list(SHAPES))
    dev = device(device_name)
    model, provenance = load_model(model_path, str(dev))
    if from_state is not None:
        state = read_state(from_state, model.config.channels)[0][:1]
    else:
        state = seed_state(model, provenance, seed=seed)
    state = state.to(dev)
    _, _, h, w = state.shape
    mask = damage_mask(h, w, shape, parse_pair(center, "--center"), radius, device=dev)
    background = background_of(provenance)
    frames = [to_pixels(state[0, :4], scale=scale, background=background)]

    def observe(step: int, x: torch.Tensor):
        if damage_at is not None and step == damage_at:
            x = apply_damage(x, mask)
        if step % every == 0 or step == steps:
            frames.append(to_pixels(x[0, :4], scale=scale, background=background))
        return x if damage_at is not None and step == damage_at else None

    g = torch.Generator(device=dev)
    g.manual_seed(seed)
    with torch.no_grad():
        model.rollout(state, steps, g, observe)
    write_video(out, frames, fps)
    summary = {"out": str(out), "frames": len(frames), "steps": steps, "fps": fps, "damage_at": damage_at}
    if json_out:
        emit_json(summary)
    else:
        console.print(f"rendered {len(frames)} frames → {out}", highlight=False)
