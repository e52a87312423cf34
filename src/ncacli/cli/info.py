"""``nca info``: what a model file holds."""

from __future__ import annotations

import typer

from ncacli.cli.common import console, emit_json
from ncacli.cli.groups import json_option


def features_of(perception: dict) -> str:
    """``7 features per channel``, or ``160 features`` where they are not grouped per channel."""
    per = perception.get("features_per_channel")
    return f"{per} features per channel" if per is not None else f"{perception['features']} features"


def info(
    model_path: str = typer.Argument(..., metavar="MODEL", help="Model file (or - for stdin)."),
    json_out: bool = json_option(),
) -> None:
    """Show a model's format, architecture, parameter count and training provenance."""
    from rich.table import Table

    from ncacli.io.model_file import describe

    data = describe(model_path)
    if json_out:
        emit_json(data)
        return
    table = Table(title=f"{model_path}", show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value")
    table.add_row("format", f"{data['format']} v{data['format_version']}")
    table.add_row("parameters", f"{data['parameters']:,}")
    if data["perception"]:
        per = data["perception"]
        table.add_row(
            "perception",
            f"{per['name']}: {features_of(per)}, receptive field "
            f"{per['receptive_field']}×{per['receptive_field']}, {per['parameters']:,} parameters",
        )
    for network in data["random_weights"]:
        note = f"[yellow]{network}: trained against an untrained network (a test)[/]"
        table.add_row("[yellow]random weights[/]", note)
    for key, value in data["spec"]["task"].items():
        table.add_row(f"task.{key}", str(value))
    for key, value in data["config"].items():
        table.add_row(f"config.{key}", str(value))
    for key, value in data["provenance"].items():
        table.add_row(f"provenance.{key}", str(value))
    for key, shape in data["tensors"].items():
        table.add_row(f"tensor {key}", "×".join(map(str, shape)))
    if data["target"]:
        shape = data["target"]
        what = f"{shape[0]} targets, one per class, " if len(shape) == 4 else ""
        table.add_row("target", "×".join(map(str, shape)) + f" RGBA ({what}kept for `nca evaluate`)")
    console.print(table)
