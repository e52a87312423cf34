"""``nca evaluate``: quality and regeneration after a perturbation (the NCAtorch review, Table 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ncacli.cli.common import device, emit_json, engine_option, parse_pair, print_table, use_engine
from ncacli.errors import NcaError, UsageError


def evaluate(
    model_path: Optional[str] = typer.Argument(
        None, metavar="[MODEL]", help="Model file or run directory (default: the newest runs/*/model.safetensors)."
    ),
    perturb: str = typer.Option("damage", "--perturb", help="damage, none, or mutation (conditional models)."),
    shape: str = typer.Option("circle", "--shape", help="Damage shape: circle, square, left, right, top, bottom."),
    radius: float = typer.Option(0.2, "--radius", min=0.0, help="Damage radius, a fraction of the grid width."),
    center: Optional[str] = typer.Option(
        None,
        "--center",
        help="Damage centre x,y (fractions). Default: a random living cell per trial (circle, "
        "square); the middle for half cuts.",
    ),  # fmt: skip
    metric: str = typer.Option("lpips,mse,psnr,ssim", "--metric", "-m", help="Comma list of lpips, mse, psnr, ssim."),
    lpips_net: str = typer.Option("alex", "--lpips-net", help="LPIPS backbone: alex, vgg, squeeze."),
    lpips_weights: Optional[str] = typer.Option(
        None,
        "--lpips-weights",
        help="Local torchvision backbone weights file (default: torchvision's cache); 'random': untrained, tests only.",
    ),
    trials: int = typer.Option(8, "--trials", min=1, help="Independent trials (fire masks, damage positions)."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the trials."),
    stage1: str = typer.Option("64-96", "--stage1", help="Stage 1: steps averaged (A-B)."),
    stage2: int = typer.Option(149, "--stage2", min=0, help="Stage 2: the step before the perturbation (m_pre)."),
    perturb_at: int = typer.Option(150, "--perturb-at", min=1, help="Step at which the perturbation is applied."),
    final: int = typer.Option(449, "--final", min=1, help="Stage 3: the final step (m_final)."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="Compare with this image instead."),
    emoji: Optional[str] = typer.Option(None, "--emoji", "-e", help="Compare with this emoji instead."),
    condition: Optional[str] = typer.Option(
        None, "--condition", "-c", help="Conditional models: every trial's class (default: trials cycle the classes)."
    ),
    condition_to: Optional[str] = typer.Option(
        None, "--condition-to", help="With --perturb mutation: the class to switch to (default: a random other one)."
    ),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the metrics over time to this PNG."),
    every: Optional[int] = typer.Option(
        None, "--every", min=1, help="Measure every N steps for the curve (default 1 with --plot)."
    ),
    device_name: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps."),
    engine: str = engine_option(),
    json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Grow, perturb and regrow; report each metric at the NCAtorch review's three stages and the recovery %."""
    from ncacli.cli.common import check_name, not_conditional, seed_state
    from ncacli.engine import SHAPES
    from ncacli.evaluation.metrics import METRIC_NAMES, make_metrics
    from ncacli.evaluation.protocol import PERTURBATIONS, Protocol, run_protocol
    from ncacli.io.model_file import load_model_and_target

    check_name("perturbation", perturb, list(PERTURBATIONS))
    check_name("damage shape", shape, list(SHAPES))
    names = [m.strip() for m in metric.split(",") if m.strip()]
    if not names:
        raise UsageError("--metric: name at least one of " + ", ".join(METRIC_NAMES))
    for name in names:
        check_name("metric", name, list(METRIC_NAMES))
    try:
        a, b = (int(v) for v in stage1.split("-"))
    except ValueError:
        raise UsageError(f"--stage1 {stage1!r}: expected two steps like 64-96") from None
    protocol = Protocol(
        stage1=(a, b),
        stage2=stage2,
        perturb_at=perturb_at,
        final=final,
        perturb=perturb,
        shape=shape,
        radius=radius,
        center=parse_pair(center, "--center") if center is not None else None,
        trials=trials,
        seed=seed,
        curve_every=every or (1 if plot is not None else 0),
    )
    try:
        protocol.check()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    path = _model_file(model_path)
    dev = device(device_name)
    model, provenance, stored_target = load_model_and_target(path, str(dev))
    engine_run = use_engine(model, engine)
    classes = model.config.condition_channels
    if perturb == "mutation" and not classes:
        raise NcaError(
            f"{path}: --perturb mutation switches the class of a conditional model; this model is not conditional "
            "(use --perturb damage or none)"
        )
    if not classes and (condition is not None or condition_to is not None):
        raise not_conditional("--condition" if condition is not None else "--condition-to")
    if condition_to is not None and perturb != "mutation":
        raise UsageError("--condition-to is the class a mutation switches to: add --perturb mutation")
    if classes and (target or emoji):
        raise UsageError(f"{path}: a conditional model is compared with its own targets; drop --target/--emoji")
    goal, goal_desc = _target(path, stored_target, provenance, target, emoji)
    seed_grid = tuple(goal.shape[-2:])
    labels, mutated = _classes(provenance, classes, trials, seed, perturb, condition, condition_to)
    metrics = make_metrics(names, lpips_net, lpips_weights, dev)
    state = seed_state(model, provenance, 1, seed_grid).to(dev)
    result = run_protocol(model, state, goal, metrics, protocol, labels, mutated)
    document = {
        "model": path,
        "config": model.config.to_dict(),
        "provenance": provenance,
        "target": goal_desc,
        "grid": list(seed_grid),
        "device": str(dev),
        "engine": engine_run,
        "protocol": {
            **protocol.to_dict(),
            "metrics": names,
            "lpips_net": lpips_net if "lpips" in names else None,
            "lpips_weights": (lpips_weights or "torchvision cache") if "lpips" in names else None,
        },
        **result,
    }
    if plot is not None:
        from ncacli.evaluation.plot import plot_png
        from ncacli.io.files import atomic_write_bytes

        atomic_write_bytes(plot, plot_png(result, protocol, f"{Path(path).name}: {goal_desc}"))
        document["plot"] = str(plot)
    _print_table(document, protocol)
    if json_out:
        emit_json(document)


def _classes(provenance: dict, classes: int, trials: int, seed: int, perturb: str, condition, condition_to):
    """A conditional model's class per trial and, for a mutation, the class each switches to (c′ ≠ c)."""
    import torch

    from ncacli.cli.common import class_index
    from ncacli.engine import other_labels

    if not classes:
        return None, None
    start = class_index(provenance, classes, condition) if condition is not None else None
    to = class_index(provenance, classes, condition_to, "--condition-to") if condition_to is not None else None
    if start is not None and start == to:
        raise UsageError(f"--condition and --condition-to are the same class ({start}): a mutation switches class")
    if start is not None:
        labels = torch.full((trials,), start)
    else:  # cycle through the classes (those a mutation can leave, when --condition-to names one)
        pool = [k for k in range(classes) if k != to]
        labels = torch.tensor([pool[i % len(pool)] for i in range(trials)])
    if perturb != "mutation":
        return labels, None
    if to is not None:
        return labels, torch.full((trials,), to)
    return labels, other_labels(labels, classes, torch.Generator().manual_seed(seed + 2))


def _model_file(name: str | None) -> str:
    """MODEL as given, a run directory's model, or the newest ``runs/*/model.safetensors``."""
    if name is None:
        found = sorted(Path("runs").glob("*/model.safetensors"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise UsageError("no MODEL named and no runs/*/model.safetensors here; train one with `nca train`")
        return str(found[-1])
    if Path(name).is_dir():
        if not (Path(name) / "model.safetensors").is_file():
            raise NcaError(f"{name}: a directory without model.safetensors (is training still running?)")
        return str(Path(name) / "model.safetensors")
    return name


def _target(path: str, stored, provenance: dict, target: str | None, emoji: str | None):
    """The target to compare with → ``((4, H, W), description)``: an option, the model's own, or its run's."""
    import tomllib

    from ncacli.io.images import load_target

    grid = provenance.get("grid")
    if target or emoji:
        run = _run_config(path)
        size, padding = run.get("size", 40), run.get("padding", 16)
        goal, desc = load_target(target or "", emoji or "", size, padding)
    elif stored is not None:
        goal, desc = stored, provenance.get("target", "the model's target")
    elif provenance.get("prompt") or provenance.get("style"):
        raise NcaError(
            f"{path}: trained with the {provenance.get('loss')} loss ({provenance.get('target')}), so it has no "
            "target image to compare with; name one with --target or --emoji"
        )
    else:
        run = _run_config(path)
        if not run:
            raise NcaError(f"{path}: the model carries no target and sits in no run directory; name one with --target")
        try:
            goal, desc = load_target(run.get("target", ""), run.get("emoji", "🦎"), run["size"], run["padding"])
        except (KeyError, tomllib.TOMLDecodeError) as exc:
            raise NcaError(f"{path}: its run's config.toml lacks {exc}") from None
    if grid and list(goal.shape[-2:]) != list(grid):
        raise NcaError(
            f"{path}: the target is {goal.shape[1]}×{goal.shape[2]} but the model grew on {grid[0]}×{grid[1]}; "
            "pass --target/--emoji with the training --size and --padding, or train on this target"
        )
    return goal, desc


def _run_config(path: str) -> dict:
    """The ``config.toml`` of the run directory holding ``path`` (itself or a checkpoint), or ``{}``."""
    import tomllib

    here = Path(path).resolve().parent
    for d in (here, here.parent):
        if (d / "config.toml").is_file():
            try:
                return tomllib.loads((d / "config.toml").read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise NcaError(f"{d / 'config.toml'}: not valid TOML ({exc})") from None
    return {}


def _fmt(stats: dict | None, digits: int) -> str:
    if not stats or stats["mean"] is None:
        return "—"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def _print_table(doc: dict, protocol) -> None:
    from rich.table import Table

    p = protocol
    what = {
        "damage": f"damage {p.shape} (r={p.radius:g})" if p.shape in ("circle", "square") else f"damage {p.shape} cut",
        "none": "no perturbation",
        "mutation": "class switched",
    }[p.perturb]
    table = Table(
        title=f"{doc['model']}\n{doc['target']} · {what} at step {p.perturb_at} · {p.trials} trials",
        title_justify="left",
    )
    table.add_column("metric", style="bold")
    table.add_column(f"stage 1 ({p.stage1[0]}–{p.stage1[1]})", justify="right")
    table.add_column(f"stage 2 ({p.stage2})", justify="right")
    table.add_column(f"perturbed ({p.perturb_at})", justify="right")
    table.add_column(f"stage 3 ({p.final})", justify="right")
    table.add_column("recovery %", justify="right")
    for name, m in doc["metrics"].items():
        digits = 2 if name == "psnr" else 4
        arrow = "↑" if m["higher_is_better"] else "↓"
        rec = m["recovery"]
        table.add_row(
            f"{name} {arrow}",
            _fmt(m["stage1"], digits),
            _fmt(m["stage2"], digits),
            _fmt(m["perturbed"], digits),
            _fmt(m["stage3"], digits),
            "—" if rec is None else f"{rec:.1f}",
        )
    captions = []
    if p.perturb != "none" and any(m["recovery"] is None for m in doc["metrics"].values()):
        what = "damage" if p.perturb == "damage" else "switch of class"
        captions.append(f"recovery —: the {what} did not make that metric worse, so there was nothing to recover")
    if "lpips" in doc["metrics"] and doc["protocol"]["lpips_weights"] == "random":
        captions.append("lpips with a random backbone (--lpips-weights random): a test of the pipeline, not a measure")
    table.caption = "\n".join(captions) or None
    print_table(table)
