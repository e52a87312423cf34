"""``nca render``: a GIF or MP4 of the growth from the seed, with optional damage mid-run, or an
interactive page (``out.html``) that runs the model in the browser. What a model reads as it grows (a class, an
input), and a video other than a growth (a video model's prediction), come from its task."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ncacli.cli.common import console, emit_json, engine_option, load, parse_pair
from ncacli.cli.groups import Cut, Guide, Reads, Zoom, device_option, grouped, json_option

VIDEO_ONLY = ("--damage-at", "--from", "--switch-at", "--zoom", "--condition-map", "--condition-video", "--input-to")


@grouped
def render(
    model_path: str = typer.Argument(..., metavar="MODEL", help="Model file."),
    out: Path = typer.Argument(..., metavar="OUT", help="out.gif, out.mp4, or out.html (an interactive page)."),
    steps: int = typer.Option(300, "--steps", "-n", min=1, help="Steps to run."),
    fps: float = typer.Option(30.0, "--fps", min=1.0, help="Frames per second."),
    every: int = typer.Option(1, "--every", min=1, help="Keep one frame every N steps."),
    scale: Optional[int] = typer.Option(
        None, "--scale", min=1, help="Display pixels per cell (default 4; a page: about 512 pixels across)."
    ),
    grid: Optional[str] = typer.Option(None, "--grid", help="Grid size N or HxW (default the training grid)."),
    steps_per_frame: Optional[int] = typer.Option(
        None, "--steps-per-frame", min=1, max=64, help="A page: steps per displayed frame (default 2)."
    ),
    title: Optional[str] = typer.Option(None, "--title", help="A page: its title (default from the model)."),
    damage_at: Optional[int] = typer.Option(
        None, "--damage-at", min=1, help="Damage the pattern at this step.", rich_help_panel=Cut.panel
    ),
    cut: Cut = Cut,
    from_state: Optional[str] = typer.Option(None, "--from", help="Start from this state instead of the seed."),
    seed: int = typer.Option(0, "--seed", help="Random seed for the fire masks."),
    reads: Reads = Reads,
    guide: Guide = Guide,
    switch_at: Optional[int] = typer.Option(
        None, "--switch-at", min=1, help="Switch the class after this step.", rich_help_panel=Reads.panel
    ),
    condition_to: Optional[str] = typer.Option(
        None, "--condition-to", help="The class to switch to at --switch-at.", rich_help_panel=Reads.panel
    ),
    condition_video: Optional[str] = typer.Option(
        None,
        "--condition-video",
        help="A video whose frames are condition maps, one per output frame.",
        rich_help_panel=Reads.panel,
    ),
    input_to: Optional[str] = typer.Option(
        None, "--input-to", help="Classifiers: the input after --switch-at.", rich_help_panel=Reads.panel
    ),
    frames: Optional[int] = typer.Option(
        None, "--frames", min=1, help="Video models: frames to predict, truth beside prediction (default up to 20)."
    ),
    zoom: Zoom = Zoom,
    device_name: str = device_option(),
    engine: str = engine_option(),
    json_out: bool = json_option("Print a JSON summary on stdout."),
) -> None:
    """Write a video of the NCA growing (and regrowing after `--damage-at`), or an interactive page."""
    from ncacli.cli.common import check_name, parse_grid
    from ncacli.cli.grow import check_zoomable, zoom_of
    from ncacli.engine import SHAPES
    from ncacli.errors import UsageError
    from ncacli.io.video import FORMATS, write_video
    from ncacli.tasks.base import Asked

    growth = {"--damage-at": damage_at, "--from": from_state, "--grid": grid, "--zoom": zoom.factor}
    given = tuple(flag for flag, value in growth.items() if value is not None)
    asked = Asked(reads.condition, reads.condition_map, switch_at, condition_to, condition_video, reads.input,
                  input_to, frames, given, model_path, guide.guidance, reads.mask)  # fmt: skip
    size = None if grid is None else parse_grid(grid)
    if out.suffix.lower() == ".html":
        return _page(model_path, out, size, scale, steps_per_frame, title, asked, json_out)
    if steps_per_frame is not None or title is not None:
        raise UsageError("--steps-per-frame and --title are for pages (out.html)")
    if out.suffix.lower() not in FORMATS:
        raise UsageError(f"{out}: unsupported output {out.suffix!r}; use .gif, .mp4 or .html")
    fractal = zoom_of(zoom, steps)
    m = load(model_path, device_name, engine)
    if fractal is not None:
        check_zoomable(m, model_path)
    shape = cut.shape or m.task.damage_shape
    check_name("damage shape", shape, list(SHAPES))
    damage = (damage_at, shape, parse_pair(cut.center or "0.5,0.5", "--center"), cut.radius)
    own = m.task.video(m, asked, scale or 4, seed)  # a task that shows something other than a growth
    shown, summary = own or _growth(m, asked, from_state, size, steps, every, scale or 4, seed, damage, fractal)
    write_video(out, shown, fps)
    summary = {"out": str(out), **summary, "fps": fps}
    if json_out:
        emit_json(summary)
    else:
        console.print(f"rendered {len(shown)} frames → {out}", highlight=False)


def _growth(m, asked, from_state, size, steps, every, scale, seed, damage, fractal) -> tuple[list, dict]:
    """The frames of the growth from the seed (or ``--from``), the pattern damaged at ``--damage-at``, the
    condition of each step from the task → ``(frames, summary)``."""
    from ncacli import api
    from ncacli.cli.common import read_state
    from ncacli.cli.grow import zoom_plan
    from ncacli.engine import damage_mask

    damage_at, shape, center, radius = damage
    if from_state is not None:
        state = read_state(from_state, m.nca.config.channels)[0][:1].to(m.device)
    else:
        state = m.seed(grid=size, seed=seed)
    _, _, h, w = state.shape
    s = m.task.scale  # a latent model's damage is cut in its picture's pixels
    mask = damage_mask(h * s, w * s, shape, center, radius, device=m.device)
    schedule = m.task.schedule(asked, (h, w), steps, every)
    if schedule.start is not None and from_state is None:  # the options name the state it starts from
        state = schedule.start
    plan = zoom_plan(m, asked.model, state, schedule.condition, fractal, steps) if fractal is not None else None
    cond, runner = schedule.condition, schedule.runner
    shown = api.frames(m, steps, every, scale, seed, state, cond, damage_at, mask, fractal, runner)
    summary = {"frames": len(shown), "steps": steps, "damage_at": damage_at, **schedule.about}
    return shown, summary if plan is None else {**summary, "zoom": plan}


def _page(model_path, out, grid, scale, steps_per_frame, title, asked, json_out) -> None:
    """Write the interactive page of the model, started from what ``--condition`` or ``--input`` names (the
    task says what that is: a class, a classifier's input)."""
    from ncacli.errors import NcaError, UsageError
    from ncacli.io.files import atomic_write_bytes
    from ncacli.web import page_html

    given = [flag for flag in VIDEO_ONLY if flag in asked.growth or flag in asked.given()]
    if given:
        raise UsageError(f"{given[0]} is for videos; a page is driven by hand (drag to erase, pick the class)")
    if asked.input is not None and asked.condition is not None:
        raise UsageError("--input and --condition both name where the page starts; give one")
    m = load(model_path, "cpu")
    if "page" not in m.task.capabilities:
        raise NcaError(f"{model_path}: the page does not show {m.spec.task.name!r} models yet; render a .gif or .mp4")
    h, w = grid or tuple(m.spec.task.grid)
    scale = scale or max(1, 512 // max(h, w))
    start, about = m.task.page_start((h, w), asked)
    named = m.task.page_name() or m.provenance.get("target") or Path(model_path).stem
    if m.path != str(model_path):  # a zoo name: the page is titled by it
        named = f"{model_path} ({named})"
    text = page_html(m.nca, m.spec, (h, w), scale, steps_per_frame or 2, title or f"nca · {named}", start)
    atomic_write_bytes(out, text.encode("utf-8"))
    summary = {"out": str(out), "grid": [h, w], "scale": scale, "bytes": len(text.encode("utf-8"))}
    summary.update(about)
    if json_out:
        emit_json(summary)
    else:
        console.print(f"wrote the page → {out} ({h}×{w} cells; open it in a browser)", highlight=False)
