"""``nca benchmark``: speed and memory of the engine beside a plain PyTorch reference, in one process."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.markup import escape

from ncacli.cli.common import check_name, console, device, emit_json, print_table
from ncacli.cli.groups import device_option, json_option
from ncacli.errors import UsageError
from ncacli.names import BENCH_ENGINES as ENGINES
from ncacli.names import BENCH_STARTS as STARTS


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 3:
        raise UsageError(f"--sizes {text!r}: expected grid widths of at least 3, like 64,128,256")
    return tuple(sorted(set(sizes)))


def benchmark(
    model_paths: Optional[list[str]] = typer.Argument(
        None,
        metavar="[MODEL]...",
        help="Model files: their architecture and weights (default: the Distill model); several are timed in one "
        "run, each against the first.",
    ),
    suite: Optional[str] = typer.Option(
        None, "--suite", "-s", help="standard (distill + ncatorch-table6), distill, ncatorch-table6, scaling, all."
    ),
    size: Optional[int] = typer.Option(None, "--size", min=3, help="Custom configuration: grid N×N (default 72)."),
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Custom configuration: batch (default 8)."),
    steps: Optional[int] = typer.Option(
        None, "--steps", "-n", min=1, help="Custom configuration: rollout steps (default 80 to train, 96 to grow)."
    ),
    sizes: Optional[str] = typer.Option(
        None,
        "--sizes",
        help="Widths of the scaling suite's grids (default 64,128,256,512) or the latent suite's pictures "
        "(default 256,512,1024); steps = W/2 of the grid the NCA runs on, batch 1.",
    ),
    repeats: Optional[int] = typer.Option(
        None, "--repeats", "-r", min=1, help="Timed runs (default 3 on CPU, 10 on GPU)."
    ),
    warmup: Optional[int] = typer.Option(
        None, "--warmup", min=1, help="Untimed runs first (default 1 on CPU, 2 on GPU)."
    ),
    no_reference: bool = typer.Option(False, "--no-reference", help="Measure the engine only."),
    max_seconds: float = typer.Option(
        60.0, "--max-seconds", min=0, help="Scaling suite: skip a measurement estimated to take longer (0: no limit)."
    ),
    max_memory: Optional[float] = typer.Option(
        None,
        "--max-memory",
        min=0,
        help="Memory budget in MB (default: 0.8 × MemAvailable on CPU; none on GPU, where OOM is caught).",
    ),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="torch CPU threads (default: torch's choice)."
    ),
    checkpoint: int = typer.Option(
        0, "--checkpoint", min=0, help="Engine training keeps the state every N steps, recomputing the rest (memory)."
    ),
    start: str = typer.Option(
        "grown", "--start", help="Where rollouts start: grown (a pattern), seed, or full (every cell alive)."
    ),
    engine: str = typer.Option(
        "auto", "--engine", help="The engine's step: auto (active on the CPU, reference on CUDA/MPS), active, reference"
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed for the fire masks and the default model's weights."),
    device_name: str = device_option(),
    json_out: bool = json_option("Also print one JSON document on stdout."),
) -> None:
    """Time training iterations and inference rollouts, and their peak memory, beside a plain reference."""
    from ncacli.bench import Settings, run_benchmark
    from ncacli.bench.subject import subject, threads_set
    from ncacli.engine.device import auto_engine

    cases, suite = _cases(suite, sizes, size, batch, steps, bool(model_paths))
    check_name("start", start, list(STARTS))
    check_name("engine", engine, list(ENGINES))
    dev = device(device_name)
    engine_option, engine = engine, auto_engine(dev) if engine == "auto" else engine
    paths: list[str | None] = list(model_paths) if model_paths else [None]
    own = _suite_subjects(suite, dev, seed, start) if not model_paths else None  # the rows a suite names itself
    subjects = own or [subject(path, dev, seed, start) for path in paths]  # every file checked before any timing
    gpu = dev.type != "cpu"
    reports = []
    for model, source, starts in subjects:
        settings = Settings(
            device=dev, repeats=repeats or (10 if gpu else 3), warmup=warmup or (2 if gpu else 1),
            max_seconds=max_seconds or None,
            max_memory=int(max_memory * 1024 * 1024) if max_memory is not None else None,
            seed=seed, checkpoint=checkpoint, start=starts, start_name=start, engine=engine,
        )  # fmt: skip
        with console.status("benchmark: starting", spinner="dots") as status, threads_set(threads):
            report = run_benchmark(model, cases, settings, not no_reference, lambda text: status.update(text))
        report = {"suite": suite, "model_source": source, **report, "engine_option": engine_option}
        if len(subjects) > 1:
            console.print(f"[bold]{escape(source)}[/bold]", highlight=False)
        for warning in report["warnings"]:
            console.print(f"[yellow]{escape(warning)}[/yellow]", highlight=False, soft_wrap=True)
        show(report)
        reports.append(report)
    review = None
    if len(reports) > 1:
        compared = between_models(reports)
        show_between(compared)
        if own and suite == "ncatorch-table6":
            from ncacli.bench.table6 import beside_review

            review = beside_review(reports)
            show_table6(review)
    if json_out:
        document = reports[0] if len(reports) == 1 else {"models": reports, "between_models": compared}
        if review is not None:
            document["review_table6"] = review
        emit_json(document)


def _suite_subjects(suite: str, dev, seed: int, start: str) -> list | None:
    """The models a suite times when no file is named (``ncatorch-table6``: the U-Net, the GAN and two NCAs of
    the review's Table 6, random weights), as ``(model, name, start states)``; None for a suite that names none."""
    from ncacli.bench.states import start_for
    from ncacli.registry import SUITES

    make = getattr(SUITES[suite], "subjects", None) if suite in SUITES else None  # "custom": --size and friends
    if make is None:
        return None
    return [(model, name, start_for(start, model, None, trained=False)) for name, model in make(dev, seed)]


def show_table6(rows: list[dict[str, Any]]) -> None:
    """Each row's figures and their ratio to the U-Net's, beside the review's (RTX 4090)."""
    from rich.table import Table

    table = Table(title="the NCAtorch review's Table 6: ours (this device) and the review's, each over its U-Net")
    for column in ("model", "parameters", "train ms", "× U-Net", "review ×", "inference ms", "× U-Net", "review ×",
                   "train MB", "× U-Net", "review ×", "inference MB", "× U-Net", "review ×"):  # fmt: skip
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        ours, over, theirs = row["ours"], row["over_unet"], row["review_over_unet"]
        cells = [row["model"], f"{ours['parameters']:,}" if ours["parameters"] is not None else "—"]
        for key in ("train_ms", "inference_ms", "train_mb", "inference_mb"):
            value = ours.get(key)
            cells += [f"{value:.1f}" if value is not None else "—", _ratio(over.get(key)), _ratio(theirs.get(key))]
        table.add_row(*cells)
    print_table(table, width=220)


def _cases(suite: str | None, sizes: str | None, size, batch, steps, models: bool) -> tuple[list, str]:
    """The configurations to measure and the suite's name: ``--suite``'s (default standard), or one custom
    configuration from ``--size``/``--batch``/``--steps`` (or a model's, when models are named)."""
    from ncacli.bench import cases_for, custom_case

    custom = size is not None or batch is not None or steps is not None
    if suite is not None:
        from ncacli.registry import SUITES

        SUITES.get(suite, "suite")
        if custom:
            raise UsageError("--size/--batch/--steps make one custom configuration; leave out --suite")
    scaling_sizes = _sizes(sizes) if sizes is not None else None
    if suite is None and (custom or models):
        return [custom_case(size, batch, steps)], "custom"
    suite = suite or "standard"
    return cases_for(suite, scaling_sizes), suite


def between_models(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each model's engine time and memory over the first model's, row by row (configuration × phase)."""
    first = {(row["case"], row["phase"]): row["engine"] for row in reports[0]["rows"]}
    out = []
    for report in reports[1:]:
        for row in report["rows"]:
            base, engine = first.get((row["case"], row["phase"])), row["engine"]
            ok = base is not None and base["status"] == "ok" and engine["status"] == "ok"
            out.append({
                "model": report["model_source"],
                "over": reports[0]["model_source"],
                "case": row["case"],
                "phase": row["phase"],
                "time_ratio": engine["median_s"] / base["median_s"] if ok else None,
                "memory_ratio": engine["peak_mb"] / base["peak_mb"] if ok and base["peak_mb"] else None,
            })  # fmt: skip
    return out


def show_between(compared: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="engine time and peak memory, each model over the first")
    for column in ("model", "over", "configuration", "phase", "time ratio", "memory ratio"):
        table.add_column(column, justify="right" if "ratio" in column else "left")
    for row in compared:
        table.add_row(
            row["model"], row["over"], row["case"], row["phase"], _ratio(row["time_ratio"]), _ratio(row["memory_ratio"])
        )
    print_table(table, width=200)


def _seconds(s: float) -> str:
    return f"{s:.2f} s" if s >= 1 else f"{s * 1000:.1f} ms"


def _time(m: dict[str, Any] | None, spread: bool = True) -> str:
    if m is None:
        return "—"
    if m["status"] != "ok":
        return m["note"] or m["status"]
    median, low, high = m["median_s"], m["min_s"], m["max_s"]
    if not spread or low == high:
        return _seconds(median)
    if median >= 1:
        return f"{median:.2f} s [{low:.2f}–{high:.2f}]"
    return f"{median * 1000:.1f} ms [{low * 1000:.1f}–{high * 1000:.1f}]"


def _rate(value: float | None) -> str:
    if not value:
        return "—"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f}"


def _mb(m: dict[str, Any] | None) -> str:
    if m is None or m["peak_mb"] is None:
        return "—"
    return f"{m['peak_mb']:,.1f}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def show(report: dict[str, Any]) -> None:
    """The header line, the table (rows: configuration × phase), and notes; all on stderr."""
    from rich.table import Table

    rows = report["rows"]
    runs = f" · {rows[0]['warmup']} warm-up + {rows[0]['repeats']} timed runs, median [min–max]" if rows else ""
    console.print(
        f"{report['device']}: {report['device_name']} · torch {report['torch']} · "
        f"{report['threads']} thread{'s' if report['threads'] != 1 else ''}, {report['cpu_count']} CPUs{runs}"
        f" · engine {report['engine']}{' (auto)' if report.get('engine_option') == 'auto' else ''}"
        f" · start {report['start']}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    table = Table()
    table.add_column("configuration")
    table.add_column("phase: batch × steps")
    columns = ("engine", "reference", "ratio", "ms/step", "cell-steps/s", "engine MB", "ref. MB", "MB ratio", "alive %")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        engine, ref = row["engine"], row["reference"]
        table.add_row(
            row["case"],
            f"{row['phase']}: {row['batch']} × {row['steps']}",
            _time(engine),
            _time(ref, spread=False),
            _ratio(row["time_ratio"]),
            f"{engine['ms_per_step']:.2f}" if engine["ms_per_step"] else "—",
            _rate(engine["cell_steps_per_s"]),
            _mb(engine),
            _mb(ref),
            _ratio(row["memory_ratio"]),
            "—" if row.get("alive_fraction") is None else f"{100 * row['alive_fraction']:.0f}",
        )
    print_table(table, width=200)
    notes = [
        "ratio = engine / reference: below 1, the engine is faster or smaller",
        f"memory: {report['memory']}",
        "alive %: the cells alive before a step, averaged over the rollout; the active engine updates those of them"
        " and of the ring round them that fire",
    ]
    if report["reference"]["note"]:
        notes.append(report["reference"]["note"])
    measured = [m for row in rows for m in (row["engine"], row["reference"]) if m is not None]
    if any(m["status"] == "skipped" for m in measured):
        notes.append(
            f"skipped: warm-up + timed runs estimated to take longer than --max-seconds {report['max_seconds']:g}"
        )
    if any(m["oom"] and m["estimated_mb"] for m in measured):
        notes.append(f"OOM (estimated …): not run, the estimate is over the budget ({report['memory_budget_source']})")
    load = report["other_process_load"]
    if load.get("cores") is not None:
        notes.append(f"other processes kept {load['cores']:.2f} cores busy on average")
    for note in notes:
        console.print(f"[dim]{escape(note)}[/dim]", highlight=False, soft_wrap=True)
