"""``nca plugins``: every entry of every kind, built-in and from plugins, with its load status."""

from __future__ import annotations

from ncacli.cli.common import console, emit_json, print_table
from ncacli.cli.groups import json_option


def plugins(json_out: bool = json_option()) -> None:
    """List verbs, architectures, perceptions, updates, objectives, tasks, metrics and suites, with options and
    capabilities."""
    from rich.table import Table

    from ncacli.registry import DISABLE_ENV, plugins_disabled, records

    rows = records()
    if json_out:
        emit_json({"plugins_disabled": plugins_disabled(), "entries": [r.to_dict() for r in rows]})
        return
    table = Table(show_header=True)
    for col in ("kind", "name", "package", "status", "options", "capabilities"):
        table.add_column(col)
    for r in rows:
        status = r.status if r.status in ("loaded", "registered") else f"[red]{r.status}[/]"
        options = ", ".join(r.options) if len(r.options) <= 6 else f"{len(r.options)} options"
        table.add_row(
            r.kind, r.name, r.package + (" (built-in)" if r.builtin else ""), status, options, ", ".join(r.capabilities)
        )
    print_table(table, width=160)
    if plugins_disabled():
        console.print(f"third-party plugins are off ({DISABLE_ENV} is set)")
