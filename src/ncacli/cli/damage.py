"""``nca damage``: cut a hole in a state or an image."""

from __future__ import annotations

import typer

from ncacli.cli.common import console, emit_json, parse_pair
from ncacli.cli.groups import Cut, grouped, json_option


@grouped
def damage(
    source: str = typer.Argument(..., metavar="STATE", help="State file, PNG image, or - for stdin."),
    out: str = typer.Option(..., "--out", "-o", help="Output file, or - for stdout (same kind as the input)."),
    cut: Cut = Cut,
    json_out: bool = json_option("Print a JSON summary on stdout (not with --out -)."),
) -> None:
    """Erase cells: a circle, a square, or a half cut, in every sample of the state."""
    from ncacli.cli.common import check_name
    from ncacli.engine import SHAPES, apply_damage, damage_mask
    from ncacli.errors import NcaError
    from ncacli.io.files import is_safetensors, read_input, write_output
    from ncacli.io.images import image_to_rgba, png_bytes, to_pixels
    from ncacli.io.state_file import parse_state, state_bytes

    shape = cut.shape or "circle"
    check_name("damage shape", shape, list(SHAPES))
    cx, cy = parse_pair(cut.center or "0.5,0.5", "--center")
    data = read_input(source)
    is_state = is_safetensors(data)
    if is_state:
        state, step = parse_state(data, source)
    else:
        try:
            state, step = image_to_rgba(data, source).unsqueeze(0), 0
        except NcaError:
            raise NcaError(f"{source}: neither an nca state file nor an image") from None
    mask = damage_mask(state.shape[2], state.shape[3], shape, (cx, cy), cut.radius)
    damaged = apply_damage(state, mask)
    if is_state:
        write_output(out, state_bytes(damaged, step))
    else:
        write_output(out, png_bytes(to_pixels(damaged[0], transparent=True)))
    erased = int(mask.sum())
    if json_out and out != "-":
        emit_json({"out": out, "shape": shape, "erased_cells": erased, "kind": "state" if is_state else "png"})
    else:
        console.print(f"damage {shape}: erased {erased} cells → {out}", highlight=False)
