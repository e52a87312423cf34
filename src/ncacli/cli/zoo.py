"""``nca zoo``: the trained models inside the package, one line each; a name works wherever a model path does."""

from __future__ import annotations

from ncacli.cli.common import console, emit_json, print_table
from ncacli.cli.groups import json_option


def zoo(json_out: bool = json_option()) -> None:
    """List the zoo's models: `nca grow NAME`, `nca render NAME page.html`, `nca evaluate NAME` take their names."""
    from rich.table import Table

    from ncacli.io.model_file import load
    from ncacli.zoo import entries

    rows = [_row(name, entry, load(entry["path"], "cpu")) for name, entry in entries().items()]
    if json_out:
        emit_json([{k: v for k, v in row.items() if k != "shown_iterations"} for row in rows])
        return
    table = Table(show_header=True)
    for column in ("name", "task", "grid", "parameters", "iterations", "measured quality", "the NCAtorch review"):
        table.add_column(column, style="bold" if column == "name" else None, no_wrap=column == "name")
    for row in rows:
        grid = "×".join(str(n) for n in row["grid"])
        table.add_row(
            row["name"], row["task"], grid, f"{row['parameters']:,}", row["shown_iterations"], row["quality"],
            row["review"] or "—",
        )  # fmt: skip
    print_table(table, width=200)
    console.print(
        "[dim]LPIPS (AlexNet) at stages 1 / 2 / 3 (steps 64–96, 149, 449), recovery after a cut at step 150; "
        "docs/zoo.md has each model's card[/dim]",
        highlight=False,
        soft_wrap=True,
    )


def _row(name: str, entry: dict, loaded) -> dict:
    """A zoo model's line: its index entry and what its file says."""
    iterations = f"{entry['iterations']:,}"
    if entry["iterations"] < entry["budget"]:
        iterations += f" of {entry['budget']:,}"  # shipped below its preset's budget: said wherever it shows
    return {
        "name": name,
        "task": loaded.spec.task.name,
        "grid": list(loaded.spec.task.grid),
        "parameters": sum(t.numel() for t in loaded.model.parameters()),
        "iterations": entry["iterations"],
        "budget": entry["budget"],
        "quality": entry["quality"],
        "lpips": lpips_of(entry.get("figures", {})),
        "review": entry.get("review", ""),
        "summary": entry["summary"],
        "command": entry["command"],
        "path": entry["path"],
        "shown_iterations": iterations,
    }


def lpips_of(figures: dict) -> dict:
    """The LPIPS (AlexNet) figures of a card: the three stages and the recovery, and after a switch of class."""
    out = {}
    for key, value in figures.items():
        if key.startswith("lpips_"):
            out[key.removeprefix("lpips_")] = value
        elif key.startswith("mutation_lpips_"):
            out["mutation_" + key.removeprefix("mutation_lpips_")] = value
    return out
