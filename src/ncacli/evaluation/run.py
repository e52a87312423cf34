"""``nca evaluate`` as a function: each task's evaluation of a loaded model.

A growing model: the NCAtorch review's regeneration protocol (:mod:`ncacli.evaluation.protocol`) against its
target. A task with an evaluation of its own (:meth:`ncacli.tasks.Task.evaluate`) runs that instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ncacli.errors import NcaError, UsageError
from ncacli.evaluation.report import Report, report_of, stages_report
from ncacli.io.weights import LPIPS_BACKBONES, source_of


def evaluate_model(
    model: Any,
    perturb: str | None = None,
    shape: str | None = None,
    radius: float = 0.2,
    center: tuple[float, float] | None = None,
    metrics: list[str] | None = None,
    lpips_net: str = "alex",
    lpips_weights: str | None = None,
    trials: int | None = None,
    seed: int = 0,
    stage1: tuple[int, int] | None = None,
    stage2: int = 149,
    perturb_at: int = 150,
    final: int = 449,
    target: str | None = None,
    emoji: str | None = None,
    condition: str | None = None,
    condition_to: str | None = None,
    curve_every: int = 0,
    vgg_weights: str | None = None,
    style: str | None = None,
    frames: int | None = None,
    damage_space: str | None = None,
) -> Report:
    """The evaluation as :class:`~ncacli.evaluation.report.Report`: its document (what ``nca evaluate --json``
    prints), its table and its plot.

    The model's task evaluates it first (:meth:`ncacli.tasks.Task.evaluate`: a classifier's accuracy, a video
    model's predicted frames); when it has no evaluation of its own, the growing protocol runs."""
    options = {k: v for k, v in locals().items() if k != "model"}  # every keyword above, as given
    own = model.task.evaluate(model, **options)
    if own is not None:
        return report_of(own, f"task {model.spec.task.name!r}")
    from ncacli.choices import not_conditional
    from ncacli.evaluation.protocol import Protocol, check_perturbation, run_protocol

    task = model.spec.task.name
    if frames is not None:
        raise UsageError(f"--frames counts the frames a video model predicts; {model.path} is a {task} model")
    perturb, shape = check_perturbation(model, perturb, "damage", shape)
    from ncacli.registry import METRICS

    names = metrics if metrics is not None else list(model.task.evaluation_metrics)
    if not names:
        raise UsageError("--metric: name at least one of " + ", ".join(sorted(METRICS)))
    for name in names:
        METRICS.get(name, "metric")
    trials = trials or 8
    protocol = Protocol(
        stage1=stage1 or (64, 96), stage2=stage2, perturb_at=perturb_at, final=final, perturb=perturb, shape=shape,
        radius=radius, center=center, trials=trials, seed=seed, curve_every=curve_every,
    )  # fmt: skip
    try:
        protocol.check()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from ncacli.evaluation.metrics import make_metrics

    path, nca, provenance, dev = model.path, model.nca, model.provenance, model.device
    classes = nca.config.condition_channels
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
    style_image, style_desc = _style_image(path, model, style) if "style" in names else (None, None)
    if (style or vgg_weights) and style_image is None:
        raise UsageError("--style and --vgg-weights are read by the style metric only: add --metric style")
    compared = [n for n in names if n != "style"]  # the metrics that compare with a target picture
    if (target or emoji) and not compared:
        raise UsageError("--target/--emoji are read by mse, psnr, ssim and lpips, not the style metric: add --metric")
    if compared:
        goal, goal_desc = _target(path, model.task.tensors.get("target"), model.spec, provenance, target, emoji)
    else:  # the style metric alone: its target argument is the style image
        goal, goal_desc = style_image, style_desc
    seed_grid = tuple(model.spec.task.grid or goal.shape[-2:])
    labels, mutated = _classes(model.spec.task.classes, classes, trials, seed, perturb, condition, condition_to)
    style_loss = provenance.get("style_loss") or "sot"  # the model's own measure (the texture preset's: sot)
    style_options = {"weights": vgg_weights, "loss": style_loss, "background": model.spec.task.background}
    made = make_metrics(names, lpips_net, lpips_weights, dev, {**style_options, "image": style_image})
    state = model.seed(1, seed_grid)
    space = _damage_space(model, damage_space, perturb)
    result = run_protocol(nca, state, goal, made, protocol, labels, mutated, model.task)
    document = {
        "model": path,
        "task": task,
        "config": nca.config.to_dict(),
        "provenance": provenance,
        "target": goal_desc,
        "grid": list(seed_grid),
        "device": str(dev),
        "engine": model.engine,
        "protocol": {
            **protocol.to_dict(),
            "metrics": names,
            "lpips_net": lpips_net if "lpips" in names else None,
            "lpips_weights": source_of(LPIPS_BACKBONES[lpips_net], lpips_weights) if "lpips" in names else None,
            "style": style_desc,
            "style_loss": style_loss if "style" in names else None,
            "vgg_weights": source_of("vgg16", vgg_weights) if "style" in names else None,
            "damage_space": space,
        },
        **result,
    }
    return stages_report(document, protocol)


def _damage_space(model: Any, space: str | None, perturb: str) -> str | None:
    """Where a latent model's damage is cut (``pixel``: the decoded picture, re-encoded; ``latent``: the grid);
    None for a model whose state is its picture."""
    own = getattr(model.task, "damage_space", None)
    if own is None:
        if space is not None:
            name = model.spec.task.name
            raise UsageError(f"--damage-space is for latent models; a {name} model's state is its picture")
        return None
    if space is not None:
        if space not in ("pixel", "latent"):
            raise UsageError(f"--damage-space {space!r}: choose pixel or latent")
        model.task.damage_space = space
    return model.task.damage_space if perturb == "damage" else None


def _classes(names: list[str], classes: int, trials: int, seed: int, perturb: str, condition, condition_to):
    """A conditional model's class per trial and, for a mutation, the class each switches to (c′ ≠ c)."""
    import torch

    from ncacli.choices import class_index
    from ncacli.engine import other_labels

    if not classes:
        return None, None
    start = class_index(names, classes, condition) if condition is not None else None
    to = class_index(names, classes, condition_to, "--condition-to") if condition_to is not None else None
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


def _target(path: str, stored, spec, provenance: dict, target: str | None, emoji: str | None):
    """The target to compare with → ``((4, H, W), description)``: an option, the model's own, or its run's."""

    from ncacli.io.images import load_target

    grid = list(spec.task.options.get("image") or spec.task.grid)  # a latent model's picture is larger than its grid
    if target or emoji:
        run = _run_config(path)
        size, padding = (run.size, run.padding) if run is not None else (40, 16)
        goal, desc = load_target(target or "", emoji or "", size, padding)
    elif stored is not None:
        goal, desc = stored, provenance.get("target", "the model's target")
    elif not _compares_with_target(provenance):
        raise NcaError(
            f"{path}: trained with the {provenance.get('loss')} loss ({provenance.get('target')}), so it has no "
            "target image to compare with; name one with --target or --emoji"
        )
    else:
        run = _run_config(path)
        if run is None:
            raise NcaError(f"{path}: the model carries no target and sits in no run directory; name one with --target")
        goal, desc = load_target(run.target, run.emoji, run.size, run.padding)
    if grid and list(goal.shape[-2:]) != list(grid):
        raise NcaError(
            f"{path}: the target is {goal.shape[1]}×{goal.shape[2]} but the model grew on {grid[0]}×{grid[1]}; "
            "pass --target/--emoji with the training --size and --padding, or train on this target"
        )
    return goal, desc


def _style_image(path: str, model: Any, style: str | None):
    """The style image the style metric compares with → ``((3 or 4, h, w), description)``: ``--style FILE``,
    fitted as the model's training fitted its own (``style_size``), or the one the model file keeps."""
    from ncacli.losses.style import StyleOptions, load_style_image
    from ncacli.tasks.image import STYLE

    if style:
        run = _run_config(path)
        size = model.provenance.get("style_size") or (run.objectives.get("style", {}).get("size") if run else None)
        size = size or StyleOptions.__dataclass_fields__["size"].default
        return load_style_image(style, int(size))[0], f"style {style}"
    stored = model.task.tensors.get(STYLE)
    if stored is not None:
        return stored, model.provenance.get("target") or "the model's style image"
    raise NcaError(
        f"{path}: no style image in the model (a model of the {model.spec.task.name} task, or one saved before "
        "texture models kept theirs); name one with --style FILE"
    )


def _compares_with_target(provenance: dict) -> bool:
    """Whether the model's objective compared with a target image (a plugin's not installed here: assumed)."""
    from ncacli.config import loss_names
    from ncacli.losses import needs_target
    from ncacli.registry import OBJECTIVES

    names = loss_names(str(provenance.get("loss") or "mse"))
    return not all(name in OBJECTIVES for name in names) or all(needs_target(name) for name in names)


def _run_config(path: str):
    """The configuration of the run directory holding ``path`` (itself or a checkpoint), or None."""
    from ncacli.config import read_run_config

    here = Path(path).resolve().parent
    for d in (here, here.parent):
        if (d / "config.toml").is_file():
            return read_run_config(d, quiet=True)
    return None
