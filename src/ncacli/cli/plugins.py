"""``nca plugins``: what is loaded from the entry-point groups."""

from __future__ import annotations

import typer

from ncacli.cli.common import console, emit_json


def plugins(json_out: bool = typer.Option(False, "--json", help="Print JSON on stdout.")) -> None:
    """List verbs, perceptions and losses, built-in and from plugins, with their load status."""
    from rich.table import Table

    from ncacli.plugins import DISABLE_ENV, load_losses, load_perceptions, plugins_disabled, records

    load_perceptions()
    load_losses()
    rows = records()
    if json_out:
        emit_json({"plugins_disabled": plugins_disabled(), "entries": [r.to_dict() for r in rows]})
        return
    table = Table(show_header=True)
    for col in ("kind", "name", "package", "status"):
        table.add_column(col)
    for r in rows:
        status = r.status if r.status == "loaded" else f"[red]{r.status}[/]"
        table.add_row(r.kind, r.name, r.package + (" (built-in)" if r.builtin else ""), status)
    console.print(table)
    if plugins_disabled():
        console.print(f"third-party plugins are off ({DISABLE_ENV} is set)")
