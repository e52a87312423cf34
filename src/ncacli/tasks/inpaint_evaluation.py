"""An inpainting model's evaluation (the NCAtorch review §3.1.4, Figure 10): held-out pictures, each with a hole,
measured in the hole and over the whole picture, before and after the rollout, beside what a user tries first.

Each trial is one held-out picture (the split the model file records, cycled) with a disc-shaped hole drawn from
``seed`` as training draws them. Four pictures are compared with the complete one:

- ``masked``: the picture with its hole (transparent: over white, as the metrics composite);
- ``autoencoder``: the autoencoder's own reconstruction of the masked picture, what the NCA starts from;
- ``nca``: the decoded picture after ``--final`` steps of the NCA from there (default 64);
- ``biharmonic``: scikit-image's ``inpaint_biharmonic`` of the masked picture (a classical inpainting).

``hole MSE`` is the MSE of RGBA over the hole's pixels alone; the other figures (``--metric``, default MSE,
PSNR, SSIM; LPIPS where AlexNet's weights are) are over the whole picture.
"""

from __future__ import annotations

from typing import Any

import torch

from ncacli.evaluation.protocol import _stats
from ncacli.evaluation.report import Report, Table, stats_text

DEFAULT = ("mse", "psnr", "ssim")
DEFAULT_STEPS = 64
METHODS = ("masked", "autoencoder", "nca", "biharmonic")


def biharmonic(masked: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
    """scikit-image's biharmonic inpainting of opaque pictures ``(B, 4, H, W)`` → ``(B, 4, H, W)``, opaque."""
    from skimage.restoration import inpaint_biharmonic

    out = []
    for picture, hole in zip(masked.cpu(), holes.cpu(), strict=True):
        rgb = picture[:3].permute(1, 2, 0).double().numpy()
        filled = inpaint_biharmonic(rgb, hole[0].numpy(), channel_axis=-1)
        out.append(torch.from_numpy(filled).float().permute(2, 0, 1).clamp(0, 1))
    rgb = torch.stack(out).to(masked.device)
    return torch.cat([rgb, torch.ones_like(rgb[:, :1])], dim=1)


def evaluate_inpainting(
    model: Any,
    trials: int | None = None,
    seed: int = 0,
    metrics: list[str] | None = None,
    final: int | None = None,
    perturb: str | None = None,
    **options: Any,
) -> Report:
    """``trials`` held-out pictures (default 16), holes and fire masks from ``seed``, the NCA run ``final`` steps
    (default 64) → the document ``nca evaluate --json`` prints. The growing protocol's other options (stages,
    damage, targets) do not apply and are ignored."""
    from ncacli.evaluation.metrics import hook, make_metrics, metric_options
    from ncacli.evaluation.protocol import check_perturbation
    from ncacli.registry import METRICS

    check_perturbation(model, perturb, "none", None)
    task, dev = model.task, model.device
    names = list(metrics) if metrics is not None else list(DEFAULT)
    steps = DEFAULT_STEPS if final in (None, 449) else int(final)  # 449: the growing protocol's default
    n = trials or 16
    test = task.test_index()
    pick = test[torch.arange(n, device=test.device) % len(test)]
    whole = task.load_data().images[pick]
    g = torch.Generator(device=dev).manual_seed(seed)
    holes = task.holes(n, g)
    masked = whole * ~holes
    with torch.no_grad():
        start = task.starts(whole, holes)
        pictures = {
            "masked": masked,
            "autoencoder": task.rgba(start),
            "nca": task.rgba(model.nca.rollout(start, steps, g)),
            "biharmonic": biharmonic(masked, holes),
        }
    kinds = {name: METRICS.get(name, "metric") for name in names}
    given = metric_options({**options, "metrics": names})
    prepared = {k: hook(kinds[k], "prepare")(model, given.get(k, {})) for k in names}
    made = make_metrics(names, dev, prepared)
    inside = holes.expand(-1, 4, -1, -1)
    figures: dict[str, dict[str, Any]] = {}
    for method, picture in pictures.items():
        picture = picture.clamp(0, 1)
        err = ((picture - whole) ** 2 * inside).flatten(1).sum(1) / inside.flatten(1).sum(1).clamp_min(1)
        row = {"hole_mse": _stats(err.cpu().tolist())}
        for name, metric in made.items():
            values = torch.cat([metric(picture[i : i + 1], whole[i]) for i in range(n)])
            row[name] = _stats(values.cpu().tolist())
        figures[method] = row
    document = {
        "model": str(model.path),
        "task": model.spec.task.name,
        "trials": n,
        "seed": seed,
        "steps": steps,
        "holes": {
            "shape": "circle",
            "radius": [task.options.hole_min, task.options.hole_max],
            "share": float(holes.float().mean()),
        },
        "metrics": ["hole_mse", *names],
        **{key: value for k in names for key, value in hook(kinds[k], "describe")(prepared[k]).items()},
        "methods": figures,
        "better": {name: ("higher" if made[name].higher_is_better else "lower") for name in names},
    }
    columns = [("picture", "left"), ("hole MSE ↓", "right")] + [(made[k].label or k, "right") for k in names]
    rows = [
        [method, *(stats_text(figures[method][k], made[k].decimals if k in made else 4) for k in ["hole_mse", *names])]
        for method in METHODS
    ]  # fmt: skip
    about = f"{n} held-out pictures, holes of {document['holes']['share']:.0%} of the pixels, NCA after {steps} steps"
    table = Table(f"{model.path} · {task.describe()} · {about}", columns, rows, bold_rows={METHODS.index("nca")})
    return Report(document, table)
