"""An example nca plugin: the `alive` verb (here) and the `moore` perception (``perception.py``)."""

from __future__ import annotations

import typer


def alive(
    state: str = typer.Argument(..., help="State file, or - for stdin."),
    threshold: float = typer.Option(0.1, "--threshold", help="Alpha above which a cell counts as alive."),
) -> None:
    """Count the alive cells of each sample in a state; prints JSON."""
    import json

    from ncacli.cli.common import read_state

    x, step = read_state(state)
    counts = [int(c) for c in (x[:, 3] > threshold).sum(dim=(1, 2))]
    print(json.dumps({"step": step, "alive_cells": counts}))
