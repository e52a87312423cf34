"""``nca evaluate`` as a function: each task's evaluation of a loaded model.

A growing model: the NCAtorch review's regeneration protocol (:mod:`ncacli.evaluation.protocol`) against its
target. A task with an evaluation of its own (:meth:`ncacli.tasks.Task.evaluate`) runs that instead.
"""

from __future__ import annotations

from typing import Any

from ncacli.errors import NcaError, UsageError
from ncacli.evaluation.metrics import metric_options
from ncacli.evaluation.report import Report, report_of, stages_report


def evaluate_model(
    model: Any,
    perturb: str | None = None,
    shape: str | None = None,
    radius: float = 0.2,
    center: tuple[float, float] | None = None,
    metrics: list[str] | None = None,
    lpips_net: str | None = None,
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
    guidance: float | None = None,
) -> Report:
    """The evaluation as :class:`~ncacli.evaluation.report.Report`: its document (what ``nca evaluate --json``
    prints), its table and its plot.

    The model's task evaluates it first (:meth:`ncacli.tasks.Task.evaluate`: a classifier's accuracy, a video
    model's predicted frames); when it has no evaluation of its own, the growing protocol runs."""
    options: dict[str, Any] = {k: v for k, v in locals().items() if k != "model"}  # every keyword, as given
    if guidance is not None:
        model.task.check_guidance(guidance, str(model.path))
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
    kinds = {name: METRICS.get(name, "metric") for name in names}
    trials = trials or 8
    protocol = Protocol(
        stage1=stage1 or (64, 96), stage2=stage2, perturb_at=perturb_at, final=final, perturb=perturb, shape=shape,
        radius=radius, center=center, trials=trials, seed=seed, curve_every=curve_every,
    )  # fmt: skip
    try:
        protocol.check()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from ncacli.evaluation.metrics import hook, make_metrics

    path, nca, provenance, dev = model.path, model.nca, model.provenance, model.device
    classes = nca.config.condition_channels
    if perturb == "mutation" and not classes:
        raise NcaError(
            f"{path}: --perturb mutation switches the class of a conditional model; this model is not conditional "
            "(use --perturb damage or none)"
        )
    own_trials = model.task.trials(trials, seed, perturb)
    if own_trials is not None and (condition is not None or condition_to is not None):
        raise UsageError(f"--condition/--condition-to name classes; a {task} model's trials are its held-out samples")
    if not classes and (condition is not None or condition_to is not None):
        raise not_conditional("--condition" if condition is not None else "--condition-to")
    if condition_to is not None and perturb != "mutation":
        raise UsageError("--condition-to is the class a mutation switches to: add --perturb mutation")
    if (classes or own_trials is not None) and (target or emoji):
        raise UsageError(f"{path}: a conditional model is compared with its own targets; drop --target/--emoji")
    given = metric_options({**options, "metrics": names})
    prepared = {name: hook(kinds[name], "prepare")(model, given.get(name, {})) for name in names}
    compared = [name for name in names if getattr(kinds[name], "compares_target", True)]
    if (target or emoji) and not compared:
        comparing = sorted(n for n in METRICS if getattr(METRICS[n], "compares_target", True))
        raise UsageError(
            f"--target/--emoji are read by {', '.join(comparing)}, not by {', '.join(names)}: add --metric"
        )
    if own_trials is not None:  # each trial its own target (a held-out pair)
        goal, goal_desc = own_trials[0], provenance.get("target", model.task.describe())
    elif compared:
        goal, goal_desc = _target(path, model.task.tensors.get("target"), model.spec, provenance, target, emoji)
    else:  # no metric compares with the target: the first one's own reference (a style image)
        goal, goal_desc = hook(kinds[names[0]], "reference")(prepared[names[0]])
    seed_grid = tuple(model.spec.task.grid or goal.shape[-2:])
    if own_trials is not None:
        labels, mutated = own_trials[1], own_trials[2]
    else:
        labels, mutated = _classes(model.spec.task.classes, classes, trials, seed, perturb, condition, condition_to)
    made = make_metrics(names, dev, prepared)
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
            **{key: value for name in names for key, value in hook(kinds[name], "describe")(prepared[name]).items()},
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
        spaces = model.task.damage_spaces
        if space not in spaces:
            raise UsageError(f"--damage-space {space!r}: choose {' or '.join(spaces)}")
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

    from ncacli.config import run_config_near
    from ncacli.io.images import load_target

    grid = list(spec.task.options.get("image") or spec.task.grid)  # a latent model's picture is larger than its grid
    if target or emoji:
        run = run_config_near(path)
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
        run = run_config_near(path)
        if run is None:
            raise NcaError(f"{path}: the model carries no target and sits in no run directory; name one with --target")
        goal, desc = load_target(run.target, run.emoji, run.size, run.padding)
    if grid and list(goal.shape[-2:]) != list(grid):
        raise NcaError(
            f"{path}: the target is {goal.shape[1]}×{goal.shape[2]} but the model grew on {grid[0]}×{grid[1]}; "
            "pass --target/--emoji with the training --size and --padding, or train on this target"
        )
    return goal, desc


def _compares_with_target(provenance: dict) -> bool:
    """Whether the model's objective compared with a target image (a plugin's not installed here: assumed)."""
    from ncacli.config import loss_names
    from ncacli.losses import needs_target
    from ncacli.registry import OBJECTIVES

    names = loss_names(str(provenance.get("loss") or "mse"))
    return not all(name in OBJECTIVES for name in names) or all(needs_target(name) for name in names)
