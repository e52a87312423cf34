"""``nca render``: a GIF or MP4 of the growth from the seed, with optional damage mid-run, or an
interactive page (``out.html``) that runs the model in the browser."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ncacli.cli.common import console, emit_json, engine_option, load, parse_pair


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
    damage_at: Optional[int] = typer.Option(None, "--damage-at", min=1, help="Damage the pattern at this step."),
    shape: str = typer.Option("circle", "--shape", help="Damage shape: circle, square, left, right, top, bottom."),
    center: str = typer.Option("0.5,0.5", "--center", help="Damage centre x,y (fractions of the grid)."),
    radius: float = typer.Option(0.2, "--radius", help="Damage radius (fraction of the grid width)."),
    from_state: Optional[str] = typer.Option(None, "--from", help="Start from this state instead of the seed."),
    seed: int = typer.Option(0, "--seed", help="Random seed for the fire masks."),
    condition: Optional[str] = typer.Option(
        None, "--condition", "-c", help="Conditional models: the class to grow, an index or a name (default 0)."
    ),
    switch_at: Optional[int] = typer.Option(None, "--switch-at", min=1, help="Switch the class after this step."),
    condition_to: Optional[str] = typer.Option(None, "--condition-to", help="The class to switch to at --switch-at."),
    condition_map: Optional[str] = typer.Option(
        None, "--condition-map", help="An image whose brightness picks each cell's class (black first, white last)."
    ),
    condition_video: Optional[str] = typer.Option(
        None, "--condition-video", help="A video whose frames are condition maps, one per output frame."
    ),
    input_image: Optional[str] = typer.Option(
        None, "--input", help="Classifiers: the input, a class (its first test image) or #N (test image N)."
    ),
    input_to: Optional[str] = typer.Option(None, "--input-to", help="Classifiers: the input after --switch-at."),
    frames: Optional[int] = typer.Option(
        None, "--frames", min=1, help="Video models: frames to predict, truth beside prediction (default up to 20)."
    ),
    zoom: Optional[float] = typer.Option(
        None, "--zoom", help="Fractal growth: scale the grid by this factor (> 1) as it grows; same picture size."
    ),
    zoom_every: Optional[int] = typer.Option(None, "--zoom-every", help="Zoom after every N steps (default 64)."),
    zooms: Optional[int] = typer.Option(None, "--zooms", help="Zoom this many times (default 1)."),
    zoom_mode: Optional[str] = typer.Option(None, "--zoom-mode", help="How to upsample: nearest (default), bilinear."),
    device_name: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps."),
    engine: str = engine_option(),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Write a video of the NCA growing (and regrowing after `--damage-at`), or an interactive page."""
    from ncacli import api
    from ncacli.cli.common import check_name, parse_grid, read_state
    from ncacli.cli.grow import check_zoomable, zoom_of, zoom_plan
    from ncacli.engine import SHAPES, damage_mask
    from ncacli.errors import UsageError
    from ncacli.io.video import FORMATS, write_video

    size = None if grid is None else parse_grid(grid)
    if out.suffix.lower() == ".html":
        unused = {"--damage-at": damage_at, "--from": from_state, "--switch-at": switch_at, "--zoom": zoom}
        unused.update({"--condition-map": condition_map, "--condition-video": condition_video, "--input-to": input_to})
        given = [name for name, value in unused.items() if value is not None]
        if given:
            raise UsageError(f"{given[0]} is for videos; a page is driven by hand (drag to erase, pick the class)")
        if input_image is not None and condition is not None:
            raise UsageError("--input and --condition both name where the page starts; give one")
        start = input_image if input_image is not None else condition  # a classifier's page: its first input
        return _page(model_path, out, size, scale, steps_per_frame, title, start, json_out)
    if steps_per_frame is not None or title is not None:
        raise UsageError("--steps-per-frame and --title are for pages (out.html)")
    scale = scale or 4
    if out.suffix.lower() not in FORMATS:
        raise UsageError(f"{out}: unsupported output {out.suffix!r}; use .gif, .mp4 or .html")
    check_name("damage shape", shape, list(SHAPES))
    fractal = zoom_of(zoom, zoom_every, zooms, zoom_mode, steps)
    m = load(model_path, device_name, engine)
    if fractal is not None:
        check_zoomable(m, model_path)
    if m.spec.task.name == "video":
        unused = {"--damage-at": damage_at, "--from": from_state, "--switch-at": switch_at, "--grid": grid}
        unused.update({"--condition": condition, "--condition-map": condition_map, "--input-to": input_to})
        given = [name for name, value in {**unused, "--condition-video": condition_video}.items() if value is not None]
        return _prediction_video(m, out, frames, fps, scale, seed, input_image, given, json_out)
    if frames is not None:
        raise UsageError(
            f"--frames counts the frames a video model predicts; {model_path} is a {m.spec.task.name} model"
        )
    if m.spec.task.name == "classify":
        return _classify_video(m, out, steps, fps, every, scale, seed, input_image, switch_at, input_to, json_out)
    if input_image is not None or input_to is not None:
        raise UsageError("--input and --input-to are for classifiers; a growing model takes --condition")
    if (switch_at is None) != (condition_to is None):
        raise UsageError("--switch-at and --condition-to go together: switch after step N to class M")
    if condition_video is not None and (condition_map is not None or condition is not None or switch_at is not None):
        raise UsageError(
            "--condition-video gives the condition of every step; drop --condition/--condition-map/--switch-at"
        )
    model, dev = m.nca, m.device
    state = read_state(from_state, model.config.channels)[0][:1].to(dev) if from_state is not None else None
    if state is None:
        state = m.seed(grid=size, seed=seed)
    _, _, h, w = state.shape
    s = m.task.scale  # a latent model's damage is cut in its picture's pixels
    mask = damage_mask(h * s, w * s, shape, parse_pair(center, "--center"), radius, device=dev)
    schedule = _conditions(
        model, m.spec.task.classes, (h, w), condition, condition_map, switch_at, condition_to, condition_video, steps,
        every, dev,
    )  # fmt: skip
    plan = zoom_plan(m, model_path, state, schedule, fractal, steps) if fractal is not None else None
    frames = api.frames(m, steps, every, scale, seed, state, schedule, damage_at, mask, zoom=fractal)
    write_video(out, frames, fps)
    summary = {"out": str(out), "frames": len(frames), "steps": steps, "fps": fps, "damage_at": damage_at}
    if plan is not None:
        summary["zoom"] = plan
    if model.config.condition_channels:
        given = {"condition": condition, "switch_at": switch_at, "condition_to": condition_to}
        given.update(condition_map=condition_map, condition_video=condition_video)
        summary.update({k: v for k, v in given.items() if v is not None} or {"condition": "0"})
    if json_out:
        emit_json(summary)
    else:
        console.print(f"rendered {len(frames)} frames → {out}", highlight=False)


def _page(model_path, out, grid, scale, steps_per_frame, title, condition, json_out) -> None:
    """Write the interactive page of the model. A classifier's page starts from the first test image of class 0,
    or of the class (or the test image ``#N``) that ``--condition`` names, and the user draws its input."""
    from ncacli.cli.common import class_index
    from ncacli.io.files import atomic_write_bytes
    from ncacli.web import classifier_inputs, page_html

    m = load(model_path, "cpu")
    if "page" not in m.task.capabilities:
        from ncacli.errors import NcaError

        raise NcaError(f"{model_path}: the page does not show {m.spec.task.name!r} models yet; render a .gif or .mp4")
    model, provenance = m.nca, m.provenance
    h, w = grid or tuple(m.spec.task.grid)
    scale = scale or max(1, 512 // max(h, w))
    k = model.config.condition_channels
    klass = 0
    inputs = None
    if m.spec.task.name == "classify":
        inputs = classifier_inputs(m.task, (h, w), condition)
    elif condition is not None:
        if not k:
            from ncacli.cli.common import not_conditional

            raise not_conditional("--condition")
        klass = class_index(m.spec.task.classes, k, condition)
    if inputs is not None:
        named = m.task.describe()
    else:
        named = ", ".join(m.spec.task.classes) or provenance.get("target") or Path(model_path).stem
    if m.path != str(model_path):  # a zoo name: the page is titled by it
        named = f"{model_path} ({named})"
    title = title or f"nca · {named}"
    text = page_html(model, m.spec, (h, w), scale, steps_per_frame or 2, title, klass, inputs)
    atomic_write_bytes(out, text.encode("utf-8"))
    summary = {"out": str(out), "grid": [h, w], "scale": scale, "bytes": len(text.encode("utf-8"))}
    if inputs is not None:
        summary["input"] = inputs["input"]["about"]
    if json_out:
        emit_json(summary)
    else:
        console.print(f"wrote the page → {out} ({h}×{w} cells; open it in a browser)", highlight=False)


def _conditions(model, names, grid, condition, condition_map, switch_at, condition_to, video, steps, every, dev):
    """The condition of each step: fixed, switched to another class after ``switch_at``, or a video's
    frame per output frame (the last frame holds); None for a model that is not conditional."""
    import torch

    from ncacli.cli.common import class_index, condition_of, not_conditional
    from ncacli.engine import one_hot, ramp

    k = model.config.condition_channels
    if video is not None:
        if not k:
            raise not_conditional("--condition-video")
        from ncacli.io.video import read_brightness_frames

        frames = ramp(read_brightness_frames(video, grid, -(-steps // every)), k).to(dev)  # (T, K, H, W)
        return lambda step: frames[min((step - 1) // every, len(frames) - 1)][None]
    start = condition_of(model, names, grid, condition, condition_map)
    if start is None:
        if switch_at is not None:
            raise not_conditional("--switch-at")
        return None
    start = start.to(dev)
    if switch_at is None:
        return start
    after = one_hot(torch.tensor([class_index(names, k, condition_to, "--condition-to")]), k).to(dev)
    return lambda step: start if step <= switch_at else after


def _classify_video(m, out, steps, fps, every, scale, seed, input_image, switch_at, input_to, json_out) -> None:
    """A classifier's video: every living cell in its predicted class's colour over the input, the input
    switched to another after ``switch_at`` (the Distill self-classifying figures), a legend below."""
    import torch

    from ncacli import api
    from ncacli.errors import UsageError
    from ncacli.io.video import write_video

    if (switch_at is None) != (input_to is None):
        raise UsageError("--switch-at and --input-to go together: switch the input after step N to another")
    task = m.task
    first = task.image_of(input_image or "0")
    after = task.image_of(input_to) if input_to is not None else first
    inputs = task.condition(torch.tensor([first, after], device=m.device))
    cond = lambda step: inputs[:1] if switch_at is None or step <= switch_at else inputs[1:]  # noqa: E731
    frames = api.frames(m, steps, every, scale, seed, condition=cond)
    write_video(out, frames, fps)
    summary = {"out": str(out), "frames": len(frames), "steps": steps, "fps": fps, "input": task.about(first)}
    if switch_at is not None:
        summary.update(switch_at=switch_at, input_to=task.about(after))
    if json_out:
        emit_json(summary)
    else:
        console.print(f"rendered {len(frames)} frames → {out}", highlight=False)


def _prediction_video(m, out, frames, fps, scale, seed, sequence, given, json_out) -> None:
    """A video model's video: a held-out sequence (``--input #N``, default the first), its true frames beside
    the model's autoregressive prediction, from the last input frame on (the NCAtorch review, Figure 16b)."""
    from ncacli.errors import UsageError
    from ncacli.io.video import write_video

    if given:
        raise UsageError(f"{given[0]} is for growing models; a video model's video takes --frames and --input #N")
    task = m.task
    index = task.sequence_of(sequence or "#0")
    shown = task.comparison_frames(m, index, frames, scale, seed)
    write_video(out, shown, fps)
    summary = {"out": str(out), "frames": len(shown), "predicted": len(shown) - 1, "fps": fps,
               "sequence": task.about(index)}  # fmt: skip
    if json_out:
        emit_json(summary)
    else:
        console.print(f"rendered {len(shown)} frames (truth | prediction) → {out}", highlight=False)
