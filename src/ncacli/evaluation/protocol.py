"""The regeneration protocol of the NCAtorch review (section 3.1.1, Table 1).

Grow ``trials`` samples from the seed at once. Stage 1: the metric averaged over steps 64–96;
stage 2: at step 149 (``m_pre``); at step 150 the perturbation is applied after the update and the
metric measured on the damaged state (``m_d``); stage 3: at step 449 (``m_final``).
``recovery = (m_final − m_d) / (m_pre − m_d) × 100``: 100 for a full return to the pre-perturbation
value, 0 for none, negative when it got worse. Step 0 is the seed; step ``s`` is after ``s`` updates.

A conditional model grows each trial under its own class and is measured against that class's
target. ``mutation`` switches a trial's class c to c′ ≠ c after the update of step 150, keeping the
cells: from then on it is measured against c′'s target, so ``m_d`` is the grown c read as c′, and
100% means c′ grew as well as c had.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ncacli.engine import ALPHA, NCA, apply_damage, damage_mask, one_hot
from ncacli.evaluation.metrics import Metric
from ncacli.names import PERTURBATIONS


@dataclass(frozen=True)
class Protocol:
    stage1: tuple[int, int] = (64, 96)
    stage2: int = 149
    perturb_at: int = 150
    final: int = 449
    perturb: str = "damage"
    shape: str = "circle"
    radius: float = 0.2
    center: tuple[float, float] | None = None  # None: a random living cell per trial (circle, square)
    trials: int = 8
    seed: int = 0
    curve_every: int = 0  # also measure every N steps for the curve (0: only the protocol's steps)
    extra_steps: tuple[int, ...] = field(default=())

    def check(self) -> None:
        a, b = self.stage1
        if not 0 <= a <= b:
            raise ValueError(f"stage 1 window {a}-{b} is empty")
        if not self.stage2 < self.perturb_at <= self.final:
            raise ValueError(
                f"steps must satisfy stage 2 ({self.stage2}) < perturbation ({self.perturb_at}) ≤ final ({self.final})"
            )
        if self.trials < 1:
            raise ValueError("trials must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stage1"] = list(self.stage1)
        d["center"] = list(self.center) if self.center is not None else "random living cell"
        del d["extra_steps"]
        return d

    def measured_steps(self) -> set[int]:
        steps = set(range(self.stage1[0], self.stage1[1] + 1)) | {0, self.stage2, self.perturb_at, self.final}
        if self.curve_every:
            steps |= set(range(0, self.final + 1, self.curve_every))
        return steps | set(self.extra_steps)


def recovery(m_pre: float, m_d: float, m_final: float, higher_is_better: bool | None = None) -> float:
    """Recovery % of the NCAtorch review, eq. 3. NaN when the perturbation did not change the metric, or, given the
    metric's direction, did not make it worse by more than 0.1%: then there is nothing to recover."""
    gap = m_pre - m_d
    tolerance = 1e-9 + (1e-3 * max(abs(m_pre), abs(m_d)) if higher_is_better is not None else 0.0)
    if not math.isfinite(gap) or abs(gap) <= tolerance:
        return math.nan
    if higher_is_better is not None and (gap < 0) == higher_is_better:
        return math.nan  # the perturbation improved the metric
    return (m_final - m_d) / gap * 100.0


def damage_centres(state: torch.Tensor, generator: torch.Generator, threshold: float) -> torch.Tensor:
    """One random living cell per sample, as ``(B, 2)`` (x, y) fractions; the grid centre if none live."""
    b, _, h, w = state.shape
    centres = torch.full((b, 2), 0.5)
    alive = (state[:, ALPHA] > threshold).cpu()
    for i in range(b):
        cells = alive[i].nonzero()
        if len(cells):
            y, x = cells[int(torch.randint(len(cells), (1,), generator=generator))].tolist()
            centres[i] = torch.tensor([(x + 0.5) / w, (y + 0.5) / h])
    return centres


def _stats(values: list[float]) -> dict[str, float | int | None]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(finite) / len(finite)
    std = (sum((v - mean) ** 2 for v in finite) / len(finite)) ** 0.5
    return {"mean": mean, "std": std, "n": len(finite)}


def run_protocol(
    model: NCA,
    seed: torch.Tensor,
    target: torch.Tensor,
    metrics: dict[str, Metric],
    protocol: Protocol,
    labels: torch.Tensor | None = None,
    mutated: torch.Tensor | None = None,
    task: Any = None,
) -> dict[str, Any]:
    """Run the protocol from ``seed`` ``(1 or B, C, H, W)`` → per-stage metrics, recovery, trials, curves.

    A conditional model's ``target`` is ``(K, 4, H, W)``, ``labels`` ``(trials,)`` the class of each
    trial and, for ``mutation``, ``mutated`` ``(trials,)`` the class each switches to. ``task`` (the model's,
    :class:`ncacli.tasks.Task`) says what a state looks like (``rgba``: a latent model's decoded picture, which
    the metrics compare and the damage is placed on) and how damage erases it (``erase``); None: the state's
    first four channels, and cells zeroed.
    """
    protocol.check()
    classes = model.config.condition_channels
    if protocol.perturb == "mutation" and not classes:
        raise ValueError("mutation switches a conditional model's class; this model is not conditional")
    if classes and (labels is None or len(labels) != protocol.trials):
        raise ValueError(f"a conditional model needs the class of each of the {protocol.trials} trials")
    if protocol.perturb == "mutation" and (mutated is None or len(mutated) != protocol.trials):
        raise ValueError("mutation needs the class each trial switches to")
    device = seed.device
    target = target.to(device)
    state = seed.expand(protocol.trials, -1, -1, -1).clone() if seed.shape[0] == 1 else seed.clone()
    steps = protocol.measured_steps()
    values: dict[str, dict[int, torch.Tensor]] = {name: {} for name in metrics}
    before: dict[str, torch.Tensor] = {}
    damage = torch.Generator().manual_seed(protocol.seed + 1)
    centres: list[list[float]] = []
    now = {"labels": labels.to(device) if labels is not None else None}
    # what the update reads for a trial's label: the task's condition (a class's one-hot, a pair's input)
    condition_of = task.condition if task is not None else (lambda which: one_hot(which, classes))
    now["condition"] = condition_of(now["labels"]) if classes else None

    view = task.rgba if task is not None else (lambda x: x)
    erase = task.erase if task is not None else apply_damage

    def measure(x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = view(x)
        which = now["labels"]
        if which is None:
            return {name: metric(x, target).float().cpu() for name, metric in metrics.items()}
        out = {name: torch.empty(x.shape[0]) for name in metrics}
        for k in which.unique().tolist():
            rows = (which == k).cpu()
            for name, metric in metrics.items():
                out[name][rows] = metric(x[rows.to(x.device)], target[k]).float().cpu()
        return out

    def observe(step: int, x: torch.Tensor):
        replaced = None
        if step == protocol.perturb_at and protocol.perturb == "mutation":
            before.update(measure(x))
            assert mutated is not None
            now["labels"] = mutated.to(device)
            now["condition"] = condition_of(now["labels"])
        if step == protocol.perturb_at and protocol.perturb == "damage":
            before.update(measure(x))
            picture = view(x)
            h, w = picture.shape[2:]
            if protocol.center is not None or protocol.shape not in ("circle", "square"):
                at = torch.tensor([list(protocol.center or (0.5, 0.5))]).expand(x.shape[0], 2)
            else:
                at = damage_centres(picture, damage, model.config.alive_threshold)
            centres.extend(at.tolist())
            replaced = x = erase(x, damage_mask(h, w, protocol.shape, at, protocol.radius, device=x.device))
        if step in steps:
            for name, v in measure(x).items():
                values[name][step] = v
        return replaced

    g = torch.Generator(device=device)
    g.manual_seed(protocol.seed)
    for name, v in measure(state).items():
        values[name][0] = v
    with torch.no_grad():
        model.rollout(state, protocol.final, g, observe, condition=lambda step: now["condition"])
    result = _summarise(values, before, metrics, protocol, centres)
    if labels is not None:
        for i, trial in enumerate(result["trials"]):
            trial["class"] = int(labels[i])
            if mutated is not None:
                trial["mutated_to"] = int(mutated[i])
    return result


def _summarise(values, before, metrics, protocol: Protocol, centres) -> dict[str, Any]:
    a, b = protocol.stage1
    out: dict[str, Any] = {"metrics": {}, "trials": [], "curve": {}}
    per_trial: list[dict[str, Any]] = [{"trial": i} for i in range(protocol.trials)]
    for i, c in enumerate(centres):
        per_trial[i]["damage_center"] = [round(v, 4) for v in c]
    for name, metric in metrics.items():
        v = values[name]
        stage1 = torch.stack([v[s] for s in range(a, b + 1)]).mean(0)
        stage2, perturbed, stage3 = v[protocol.stage2], v[protocol.perturb_at], v[protocol.final]
        means = [float(t.mean()) for t in (stage2, perturbed, stage3)]
        if protocol.perturb == "none":  # nothing to recover from
            rec, means[1] = [math.nan] * protocol.trials, means[0]
        else:
            better = metric.higher_is_better
            rec = [
                recovery(float(p), float(d), float(f), better)
                for p, d, f in zip(stage2, perturbed, stage3, strict=True)
            ]
        out["metrics"][name] = {
            "higher_is_better": metric.higher_is_better,
            "stage1": _stats(stage1.tolist()),
            "stage2": _stats(stage2.tolist()),
            "before_perturbation": _stats(before[name].tolist()) if name in before else None,
            "perturbed": _stats(perturbed.tolist()),
            "stage3": _stats(stage3.tolist()),
            # eq. 3 on the trial means (the headline), and per trial (spread; noisy when a cut barely hurts)
            "recovery": _nan_to_none(recovery(*means, metric.higher_is_better)),
            "recovery_per_trial": _stats(rec),
        }
        for i in range(protocol.trials):
            per_trial[i][name] = {
                "stage1": float(stage1[i]),
                "stage2": float(stage2[i]),
                "perturbed": float(perturbed[i]),
                "stage3": float(stage3[i]),
                "recovery": _nan_to_none(rec[i]),
            }
        steps = sorted(v)
        curve = torch.stack([v[s] for s in steps])
        out["curve"][name] = {
            "steps": steps,
            "mean": curve.mean(1).tolist(),
            "std": curve.std(1, unbiased=False).tolist(),
        }
    out["trials"] = per_trial
    return out


def _nan_to_none(x: float) -> float | None:
    return None if not math.isfinite(x) else x


def check_perturbation(model: Any, perturb: str | None, default: str, shape: str | None) -> tuple[str, str]:
    """``--perturb`` (``default`` when not given) checked against what the model's task can do, and ``--shape``
    (default the task's own, else circle) → ``(perturb, shape)``."""
    from ncacli.choices import check_name
    from ncacli.engine import SHAPES
    from ncacli.errors import UsageError

    perturb = perturb or default
    allowed = model.task.perturbations
    if perturb not in allowed:
        check_name("perturbation", perturb, list(PERTURBATIONS))
        task = model.spec.task.name
        raise UsageError(f"--perturb {perturb}: a {task} model takes {', '.join(allowed) or 'no perturbation'}")
    shape = shape or model.task.damage_shape  # a texture's: the review's half cut
    check_name("damage shape", shape, list(SHAPES))
    return perturb, shape
