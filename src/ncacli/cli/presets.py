"""``nca presets``: the shipped presets, one line each."""

from __future__ import annotations

from ncacli.cli.common import console, emit_json
from ncacli.cli.groups import json_option


def presets(json_out: bool = json_option()) -> None:
    """List the presets `nca train --preset` accepts."""
    from rich.table import Table

    from ncacli.config import list_presets, preset_summary

    found = list_presets()
    if json_out:
        emit_json({name: {"path": str(path), "summary": preset_summary(path)} for name, path in found.items()})
        return
    table = Table(show_header=True)
    table.add_column("preset", style="bold")
    table.add_column("what it is")
    for name, path in found.items():
        table.add_row(name, preset_summary(path))
    console.print(table)
