"""``nca evaluate``: quality and regeneration after a perturbation (the NCAtorch review, Table 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ncacli.cli.common import emit_json, engine_option, parse_pair, print_table
from ncacli.cli.groups import Cut, Guide, device_option, grouped, json_option
from ncacli.errors import NcaError, UsageError


@grouped
def evaluate(
    model_path: Optional[str] = typer.Argument(
        None, metavar="[MODEL]", help="Model file or run directory (default: the newest runs/*/model.safetensors)."
    ),
    perturb: Optional[str] = typer.Option(
        None, "--perturb", help="damage, none, or mutation (conditional models, classifiers); default damage."
    ),
    cut: Cut = Cut,
    metric: Optional[str] = typer.Option(
        None,
        "--metric",
        "-m",
        help="Comma list of lpips, mse, psnr, ssim, style (default lpips,mse,psnr,ssim; textures: style).",
    ),
    vgg_weights: Optional[str] = typer.Option(
        None,
        "--vgg-weights",
        help="The style metric's VGG16: a local weights file (default: $NCA_VGG16_WEIGHTS, else torchvision's cache); "
        "'random': untrained, tests only.",
    ),  # fmt: skip
    style: Optional[str] = typer.Option(
        None, "--style", help="The style metric's style image (default: the one a texture model file keeps)."
    ),
    damage_space: Optional[str] = typer.Option(
        None, "--damage-space", help="Latent models: cut damage in the decoded picture (pixel, re-encoded) or latent."
    ),
    lpips_net: Optional[str] = typer.Option(None, "--lpips-net", help="LPIPS backbone: alex (default), vgg, squeeze."),
    lpips_weights: Optional[str] = typer.Option(
        None,
        "--lpips-weights",
        help="Local backbone weights file, whole or features only (default: $NCA_ALEXNET_WEIGHTS for AlexNet, else "
        "torchvision's cache); 'random': untrained, tests only.",
    ),
    trials: Optional[int] = typer.Option(
        None, "--trials", min=1, help="Independent trials (default 8; classifiers: up to 512 test images)."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed of the trials."),
    stage1: Optional[str] = typer.Option(
        None, "--stage1", help="Stage 1: steps averaged, A-B (default 64-96; classifiers 20-30)."
    ),
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
    frames: Optional[int] = typer.Option(
        None, "--frames", min=1, help="Video models: frames predicted one after another (default up to 20)."
    ),
    guide: Guide = Guide,
    device_name: str = device_option(),
    engine: str = engine_option(),
    json_out: bool = json_option("One JSON document on stdout."),
) -> None:
    """Grow, perturb and regrow; report each metric at the NCAtorch review's three stages and the recovery %."""
    from ncacli.cli.common import load
    from ncacli.evaluation.run import evaluate_model

    options = _options(dict(locals()))
    path = _model_file(model_path)
    model = load(path, device_name, engine)
    report = evaluate_model(model, **options)
    document = report.document
    if plot is not None:
        if report.plot is None:
            raise UsageError(f"--plot: {model.spec.task.name!r} models draw no plot; their figures are in --json")
        from ncacli.io.files import atomic_write_bytes

        atomic_write_bytes(plot, report.plot(f"{Path(path).name}: {document.get('target', '')}"))
        document["plot"] = str(plot)
    print_table(rich_table(report.table))
    if json_out:
        emit_json(document)


def _options(given: dict) -> dict:
    """The verb's options as :func:`ncacli.evaluation.run.evaluate_model` takes them: ``--stage1 64-96`` a
    pair of steps, ``--center`` a pair, ``--metric`` a list, ``--every`` the curve's spacing (1 for ``--plot``)."""
    import inspect

    from ncacli.evaluation.run import evaluate_model

    window = None
    if given["stage1"] is not None:
        parts = [v.strip() for v in given["stage1"].split("-")]
        if len(parts) != 2 or not all(v.isdigit() for v in parts):
            raise UsageError(f"--stage1 {given['stage1']!r}: expected two steps like 64-96")
        window = (int(parts[0]), int(parts[1]))
    metric, cut = given["metric"], given["cut"]
    parsed = {
        "stage1": window,
        "shape": cut.shape,
        "radius": cut.radius,
        "center": parse_pair(cut.center, "--center") if cut.center is not None else None,
        "metrics": [m.strip() for m in metric.split(",") if m.strip()] if metric is not None else None,
        "curve_every": given["every"] or (1 if given["plot"] is not None else 0),
        "guidance": given["guide"].guidance,
    }
    names = [n for n in inspect.signature(evaluate_model).parameters if n != "model"]
    return {name: parsed[name] if name in parsed else given[name] for name in names}


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


def rich_table(table):
    """A report's plain table drawn by Rich."""
    from rich.table import Table

    drawn = Table(title=table.title, title_justify="left", caption=table.caption)
    for i, (header, justify) in enumerate(table.columns):
        drawn.add_column(header, justify=justify, style="bold" if i == 0 else None)
    for i, row in enumerate(table.rows):
        drawn.add_row(*row, style="bold" if i in table.bold_rows else None)
    return drawn
