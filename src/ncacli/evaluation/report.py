"""An evaluation as the verbs show it, whatever the task: the document ``nca evaluate --json`` prints, a table of
plain text and, where the task draws one, a plot. A task's own :meth:`~ncacli.tasks.Task.evaluate` returns a
:class:`Report`, or just its document (a dict), which is then shown as a table of its figures."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# what a plain document's table leaves out: the model's description, not its measurement
DESCRIPTION = ("config", "provenance", "protocol", "trials", "model", "task", "target", "grid", "device", "engine")


@dataclass
class Table:
    """A table in plain text: ``columns`` are ``(header, justify)``; the verb draws it."""

    title: str
    columns: list[tuple[str, str]]
    rows: list[list[str]] = field(default_factory=list)
    caption: str | None = None
    bold_rows: set[int] = field(default_factory=set)  # rows drawn in bold (a mean below the others)


@dataclass
class Report:
    """``document``: what ``--json`` prints; ``table``: what the terminal shows; ``plot``: title → PNG bytes of
    the figures over time, None where the task draws none."""

    document: dict[str, Any]
    table: Table
    plot: Callable[[str], bytes] | None = None


def report_of(result: Any, origin: str) -> Report:
    """A task's evaluation as a :class:`Report`: as it is, or its document shown figure by figure."""
    if isinstance(result, Report):
        return result
    if isinstance(result, dict):
        title = f"{result.get('model', origin)}"
        rows = [[key, text_of(value)] for key, value in figures(result)]
        return Report(result, Table(title, [("figure", "left"), ("value", "right")], rows))
    raise TypeError(f"{origin}: evaluate returned {type(result).__name__}, not a Report or a dict")


def figures(document: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """The numbers and words a document holds, as ``(dotted key, value)``, its description left out."""
    out = []
    for key, value in document.items():
        if not prefix and (key in DESCRIPTION or key.startswith("_")):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += figures(value, f"{name}.")
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out.append((name, value))
    return out


def text_of(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def stats_text(stats: dict[str, Any] | None, digits: int) -> str:
    """``mean ± std`` of a stage's statistics, ``—`` where there are none."""
    if not stats or stats.get("mean") is None:
        return "—"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def stages_table(doc: dict[str, Any], protocol: Any, switched: str = "class switched") -> Table:
    """The growing protocol's table: each metric at the three stages, perturbed, and its recovery %.
    ``switched``: what a mutation is for this task (a class switched, an input switched)."""
    p = protocol
    damage = f"damage {p.shape} (r={p.radius:g})" if p.shape in ("circle", "square") else f"damage {p.shape} cut"
    what = {"damage": damage, "none": "no perturbation", "mutation": switched}[p.perturb]
    title = f"{doc['model']}\n{doc['target']} · {what} at step {p.perturb_at} · {p.trials} trials"
    columns = [("metric", "left"), (f"stage 1 ({p.stage1[0]}–{p.stage1[1]})", "right")]
    columns += [(f"stage 2 ({p.stage2})", "right"), (f"perturbed ({p.perturb_at})", "right")]
    columns += [(f"stage 3 ({p.final})", "right"), ("recovery %", "right")]
    from ncacli.evaluation.metrics import declared, hook

    table = Table(title, columns)
    for name, m in doc["metrics"].items():
        digits = getattr(declared(name), "decimals", 4)
        cells = [stats_text(m[stage], digits) for stage in ("stage1", "stage2", "perturbed", "stage3")]
        recovery = "—" if m["recovery"] is None else f"{m['recovery']:.1f}"
        table.rows.append([f"{name} {'↑' if m['higher_is_better'] else '↓'}", *cells, recovery])
    captions = []
    if p.perturb != "none" and any(m["recovery"] is None for m in doc["metrics"].values()):
        what = "damage" if p.perturb == "damage" else "switch"
        captions.append(f"recovery —: the {what} did not make that metric worse, so there was nothing to recover")
    notes = (hook(declared(name), "caption")(doc["protocol"]) for name in doc["metrics"])
    captions += [note for note in notes if note]
    table.caption = "\n".join(captions) or None
    return table


def stages_report(doc: dict[str, Any], protocol: Any, switched: str = "class switched") -> Report:
    """The growing protocol's :class:`Report`: its table, and its curves over the rollout as the plot."""

    def plot(title: str) -> bytes:
        from ncacli.evaluation.plot import plot_png

        return plot_png(doc, protocol, title)

    return Report(doc, stages_table(doc, protocol, switched), plot)
