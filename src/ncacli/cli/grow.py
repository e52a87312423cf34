"""``nca grow``: run a model from its seed or from a state."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Optional

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
from ncacli.cli.groups import Guide, Reads, Zoom, device_option, grouped, json_option

if TYPE_CHECKING:
    import torch


@grouped
def grow(
    model_path: str = typer.Argument(..., metavar="MODEL", help="Model file (or - for stdin)."),
    steps: int = typer.Option(200, "--steps", "-n", min=0, help="Steps to run."),
    out: str = typer.Option(..., "--out", "-o", help="Output: .png picture, .safetensors state, or - (state)."),
    from_state: Optional[str] = typer.Option(None, "--from", help="Start from this state file (- for stdin)."),
    batch: int = typer.Option(1, "--batch", min=1, help="Grow this many samples from the seed."),
    samples: Optional[int] = typer.Option(
        None, "--samples", min=2, help="Grow N samples and write them side by side with their spread (a PNG)."
    ),
    size: Optional[str] = typer.Option(None, "--grid", help="Grid size N or HxW when growing from the seed."),
    seed: int = typer.Option(0, "--seed", help="Random seed for the fire masks."),
    reads: Reads = Reads,
    guide: Guide = Guide,
    fmt: Optional[str] = typer.Option(None, "--format", help="png or state (default from --out)."),
    transparent: bool = typer.Option(False, "--transparent", help="Keep alpha in the PNG instead of white."),
    scale: int = typer.Option(1, "--scale", min=1, help="Upscale the PNG by this factor (nearest)."),
    zoom: Zoom = Zoom,
    latent: bool = typer.Option(False, "--latent", help="Latent models: write the latent state, not the picture."),
    device_name: str = device_option(),
    engine: str = engine_option(),
    json_out: bool = json_option("Print a JSON summary on stdout (not with --out -)."),
) -> None:
    """Grow a pattern: from the model's seed, or on from a state (`--from`)."""
    from ncacli.errors import UsageError
    from ncacli.tasks.base import Asked

    as_state = wants_state(out, fmt) or latent
    if samples is not None:
        if batch != 1 or as_state:
            raise UsageError("--samples writes one picture of N samples; --batch N grows them into a state file")
        batch = samples
    fractal = zoom_of(zoom, steps)
    if model_path == "-" and from_state == "-":
        raise UsageError("only one of MODEL and --from can be read from stdin")
    m = load(model_path, device_name, engine)
    if m.task.not_grown:
        raise UsageError(f"{model_path}: {m.task.not_grown}")
    if latent and m.task.scale == 1:
        raise UsageError(f"--latent: {model_path} grows in pixel space; its state is its picture (--format state)")
    state, start = _start(m, from_state, size, batch, seed)
    asked = Asked(condition=reads.condition, condition_map=reads.condition_map, input=reads.input, model=model_path,
                  guidance=guide.guidance, mask=reads.mask)  # fmt: skip
    schedule = m.task.schedule(asked, tuple(state.shape[2:]), steps)
    cond = schedule.condition
    if schedule.start is not None and from_state is None:  # the options name the state it starts from
        state = schedule.start.expand(len(state), -1, -1, -1).clone()
    plan = zoom_plan(m, model_path, state, cond, fractal, steps) if fractal is not None else None
    state = m.grow(steps, state, seed, cond, zoom=fractal, runner=schedule.runner).cpu()
    if samples is not None:
        _write_samples(out, m.rgba(state), scale, transparent, background_of(m.spec))
        kind = "png"
    else:
        shown = state if as_state else m.rgba(state[:1])  # a latent model's picture is decoded
        kind = write_picture_or_state(out, shown, start + steps, transparent, scale, as_state, background_of(m.spec))
    _report(m, out, kind, state, start, steps, plan, json_out and out != "-")


def _write_samples(out: str, rgba: torch.Tensor, scale: int, transparent: bool, background: str) -> None:
    """``--samples``: the pictures side by side (rows of up to ten), their spread last."""
    from ncacli.errors import UsageError
    from ncacli.io.files import write_output
    from ncacli.io.images import png_bytes, sample_tiles, tiled

    if transparent:
        raise UsageError("--transparent: --samples draws its spread map on the model's background")
    n = len(rgba) + 1
    write_output(out, png_bytes(tiled(sample_tiles(rgba, scale, background), min(n, 10), max(1, scale))))


def _start(m, from_state: str | None, size: str | None, batch: int, seed: int) -> tuple[torch.Tensor, int]:
    """The state to grow from and its step: ``--from``'s, else ``batch`` seeds on ``--grid``."""
    from ncacli.cli.common import parse_grid

    if from_state is not None:
        return read_state(from_state, m.nca.config.channels)
    return m.seed(batch, None if size is None else parse_grid(size), seed), 0


def _report(m, out: str, kind: str, state: torch.Tensor, start: int, steps: int, plan, as_json: bool) -> None:
    """The summary of a growth: JSON on stdout, or one line on stderr."""
    cfg = m.nca.config
    # without alive masking (textures) alpha is one more hidden channel: no cell is "dead"
    alive = int((state[:, 3] > cfg.alive_threshold).sum()) if cfg.alive_masking else None
    summary = {"out": out, "kind": kind, "steps": steps, "step": start + steps, "shape": list(state.shape)}
    summary["alive_cells"] = alive
    if plan is not None:
        summary["zoom"] = plan
    if as_json:
        emit_json(summary)
        return
    cells = f", {alive} alive cells" if alive is not None else ""
    if plan is not None:
        cells += f", grid {state.shape[2]}×{state.shape[3]}"
    console.print(f"grew {steps} steps → {out} ({kind}{cells})", highlight=False)


def zoom_of(given: Zoom, steps: int):
    """The fractal-growth options (:class:`ncacli.cli.groups.Zoom`) → a :class:`ncacli.engine.zoom.Zoom` checked
    against ``--steps``, or None without ``--zoom``."""
    from ncacli.engine.zoom import Zoom as Plan
    from ncacli.engine.zoom import ZoomError
    from ncacli.errors import UsageError

    flags = {f.name: f.metadata["decls"][0] for f in dataclasses.fields(Zoom)}
    if given.factor is None:
        for name, value in dataclasses.asdict(given).items():
            if value is not None:
                raise UsageError(f"{flags[name]} goes with --zoom FACTOR (fractal growth: scale the grid as it grows)")
        return None
    every, times = 64 if given.every is None else given.every, 1 if given.times is None else given.times
    try:
        zoom = Plan(given.factor, every, times, given.mode or "nearest")
        zoom.check(steps)
    except ZoomError as exc:
        raise UsageError(f"{flags.get(exc.field, '--steps')} {exc.value}: {exc.reason}") from None
    return zoom


def check_zoomable(m, model_path) -> None:
    """Refuse ``--zoom`` for a model whose state is not a picture of the grid (its task lacks ``zoom``), or that
    does not step (a single-pass U-Net)."""
    from ncacli.registry import capabilities

    if "steps" not in capabilities(m.nca):
        from ncacli.errors import UsageError

        raise UsageError(f"{model_path}: --zoom scales the grid between steps; a {m.nca.config.architecture} model "
                         "does not step")  # fmt: skip
    if "zoom" not in m.task.capabilities:
        from ncacli.errors import UsageError

        name = m.spec.task.name
        raise UsageError(f"{model_path}: --zoom scales a picture of the grid; a {name!r} model's state is not one")


def zoom_plan(m, model_path, state, condition, zoom, steps) -> dict:
    """Before a zoomed rollout: refuse a model whose state is not a picture, or a last grid that cannot fit in
    the device's free memory (one line, nothing run); else print one line on stderr with the grids, the
    peak memory and the time expected (steps timed at the first grid and a larger one), and return them for
    the JSON."""
    from ncacli.bench.system import available_memory
    from ncacli.engine.zoom import peak_bytes, rollout_seconds, step_cost
    from ncacli.errors import NcaError

    check_zoomable(m, model_path)
    if callable(condition):  # a schedule (nca render): the speed is measured with its first step's condition
        condition = condition(1)
    batch, (h, w) = state.shape[0], tuple(state.shape[2:])
    free = available_memory(m.device)
    per_cell = peak_bytes(m.nca, batch, (1, 1))
    grids = zoom.grids(h, w, limit=None if free is None else free // per_cell)
    peak = peak_bytes(m.nca, batch, grids[-1])
    if free is not None and peak > free:
        (gh, gw), j = grids[-1], len(grids) - 1
        raise NcaError(
            f"--zooms {zoom.times}: zoom {j} makes a {gh}×{gw} grid that needs about {_size(peak)}; "
            f"{_size(free)} is free on {m.device.type}"
        )
    seconds = rollout_seconds(zoom, steps, grids, batch, step_cost(m.nca, state, grids, condition))
    shown = grids if len(grids) <= 6 else [*grids[:2], None, *grids[-2:]]
    chain = " → ".join("…" if g is None else f"{g[0]}×{g[1]}" for g in shown)
    of = f" of {_size(free)} free" if free is not None else ""
    line = f"zoom: {chain} cells; peak memory about {_size(peak)}{of}; at most about {seconds:.3g} s"
    console.print(line, highlight=False, markup=False, soft_wrap=True)
    return {"grids": [list(g) for g in grids], "zoom_at": zoom.at(), "factor": zoom.factor, "mode": zoom.mode,
            "peak_bytes": peak, "free_bytes": free, "seconds": round(seconds, 3)}  # fmt: skip


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"
