"""Helpers shared by the verbs: the stderr console, JSON output, models and states in and out."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

from ncacli.choices import ENGINE_NAMES, check_name, class_index, device, not_conditional, use_engine  # noqa: F401
from ncacli.console import console
from ncacli.errors import NcaError, UsageError
from ncacli.names import BACKGROUNDS


def print_table(table: Any, width: int = 132) -> None:
    """A Rich table on stderr: as wide as the terminal, or ``width`` columns when stderr is a pipe or file."""
    if console.is_terminal:
        console.print(table)
    else:
        Console(file=sys.stderr, width=width).print(table)


def emit_json(data: Any) -> None:
    """One JSON document on stdout, for scripts."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


ENGINE_HELP = (
    "How steps run: auto (active on the CPU, reference on CUDA and MPS), active, reference, "
    "or fused (Triton, CUDA inference)."
)


def engine_option():
    import typer

    return typer.Option("auto", "--engine", help=ENGINE_HELP)


def parse_pair(text: str, option: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected two numbers like 0.5,0.5") from None
    return a, b


def parse_grid(text: str) -> tuple[int, int]:
    """``--grid``: ``N`` (square) or ``HxW`` → ``(H, W)``, each at least 3."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        raise UsageError(f"--grid {text!r}: expected N or HxW, like 72 or 64x96") from None
    if len(parts) > 2 or min(h, w) < 3:
        raise UsageError(f"--grid {text!r}: expected N or HxW with sides of at least 3 cells")
    return h, w


def read_state(name: str, channels: int | None = None):
    """A state file (or ``-``) → ``(state (B, C, H, W), step)``, checked against ``channels``."""
    from ncacli.io.files import is_safetensors, read_input
    from ncacli.io.images import PNG_MAGIC
    from ncacli.io.state_file import check_channels, parse_state

    data = read_input(name)
    if data.startswith(PNG_MAGIC) and not is_safetensors(data):
        raise NcaError(f"{name}: is an image, not a state file (write states with `nca grow --out state.safetensors`)")
    state, step = parse_state(data, name)
    if channels is not None:
        check_channels(state, channels, name)
    return state, step


def write_picture_or_state(
    out: str, state, step: int, transparent: bool, scale: int, as_state: bool, background: str = "white"
) -> str:
    """Write ``state`` (B, C, H, W) as a PNG (first sample) or a state file; returns what was written."""
    from ncacli.io.files import write_output
    from ncacli.io.images import png_bytes, to_pixels
    from ncacli.io.state_file import state_bytes

    if as_state:
        write_output(out, state_bytes(state, step))
        return "state"
    write_output(out, png_bytes(to_pixels(state[0, :4], transparent=transparent, scale=scale, background=background)))
    return "png"


def wants_state(out: str, fmt: str | None) -> bool:
    """Output kind: ``--format`` wins; else ``.png`` → picture, ``-`` or ``.safetensors`` → state."""
    if fmt is not None:
        if fmt not in ("png", "state"):
            raise UsageError(f"--format {fmt!r}: choose png or state")
        return fmt == "state"
    lower = out.lower()
    if lower.endswith((".png",)):
        return False
    if out == "-" or lower.endswith(".safetensors"):
        return True
    raise UsageError(f"--out {out}: use a .png or .safetensors name, or - (or say --format png|state)")


def background_of(spec) -> str:
    """How the model's pictures are shown: white, black, or none (RGB alone)."""
    background = spec.task.background
    return background if background in BACKGROUNDS else "white"


def load(path: str, device_name: str = "auto", engine: str = "auto"):
    """``MODEL`` and ``--device``/``--engine`` → :class:`ncacli.api.Model`."""
    from ncacli.api import load as load_model

    return load_model(path, device(device_name), engine)
