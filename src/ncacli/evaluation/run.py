"""``nca evaluate`` as a function: each task's evaluation of a loaded model.

A growing model (``image``, ``text``, ``texture``): the NCAtorch review's regeneration protocol
(:mod:`ncacli.evaluation.protocol`) against its target. A classifier: accuracy on its test split
(:mod:`ncacli.evaluation.classify`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ncacli.errors import NcaError, UsageError
from ncacli.names import PERTURBATIONS


def evaluate_model(
    model: Any,
    perturb: str | None = None,
    shape: str = "circle",
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
) -> dict[str, Any]:
    """The evaluation document (what ``nca evaluate --json`` prints); ``_protocol`` holds the protocol."""
    from ncacli.cli.common import check_name, not_conditional
    from ncacli.engine import SHAPES
    from ncacli.evaluation.protocol import Protocol, run_protocol

    task = model.spec.task.name
    perturb = perturb or ("mutation" if task == "classify" else "damage")
    allowed = model.task.perturbations
    if perturb not in allowed:
        check_name("perturbation", perturb, list(PERTURBATIONS))
        raise UsageError(f"--perturb {perturb}: a {task} model takes {', '.join(allowed) or 'no perturbation'}")
    check_name("damage shape", shape, list(SHAPES))
    if task == "classify":
        from ncacli.evaluation.classify import evaluate_classifier

        return evaluate_classifier(model, perturb, trials, seed, stage1 or (20, 30), stage2, perturb_at, final,
                                   curve_every)  # fmt: skip
    from ncacli.registry import METRICS

    names = metrics if metrics is not None else ["lpips", "mse", "psnr", "ssim"]
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
    goal, goal_desc = _target(path, model.task.tensors.get("target"), model.spec, provenance, target, emoji)
    seed_grid = tuple(goal.shape[-2:])
    labels, mutated = _classes(model.spec.task.classes, classes, trials, seed, perturb, condition, condition_to)
    made = make_metrics(names, lpips_net, lpips_weights, dev)
    state = model.seed(1, seed_grid)
    result = run_protocol(nca, state, goal, made, protocol, labels, mutated)
    return {
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
            "lpips_weights": (lpips_weights or "torchvision cache") if "lpips" in names else None,
        },
        **result,
        "_protocol": protocol,
    }


def _classes(names: list[str], classes: int, trials: int, seed: int, perturb: str, condition, condition_to):
    """A conditional model's class per trial and, for a mutation, the class each switches to (c′ ≠ c)."""
    import torch

    from ncacli.cli.common import class_index
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
    import tomllib

    from ncacli.io.images import load_target

    grid = spec.task.grid
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


