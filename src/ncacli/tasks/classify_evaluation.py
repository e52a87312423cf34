"""A classifier's evaluation (the NCAtorch review §3.3.1, Table 3): accuracy on the test split over time.

``trials`` test images (the first ones of the split recorded in the model file) start from zero states and
run ``final`` steps. Per-pixel accuracy is the share of the digit's living cells whose class channels' argmax
is the image's class; image accuracy takes the argmax of their mean. Reported: averaged over the stage-1
window (steps 20–30), at stage 2 (149) and at the final step (449). ``mutation`` swaps each input for a test
image of another class after the update of step ``perturb_at``, keeping the cells: the accuracy right
after (against the new class) is ``m_d``, and recovery is eq. 3 on accuracy.
"""

from __future__ import annotations

from typing import Any

import torch

from ncacli.evaluation.protocol import Protocol, _nan_to_none, _stats, recovery
from ncacli.evaluation.report import Report, stages_report

METRICS = ("pixel_accuracy", "image_accuracy")


def evaluate_classifier(
    model: Any,
    perturb: str,
    trials: int | None,
    seed: int,
    stage1: tuple[int, int],
    stage2: int,
    perturb_at: int,
    final: int,
    curve_every: int = 0,
) -> Report:
    from ncacli.errors import UsageError

    task, dev = model.task, model.device
    data, test = task.load_data(), task.test_index()
    n = min(trials or 512, len(test))
    protocol = Protocol(stage1=stage1, stage2=stage2, perturb_at=perturb_at, final=final, perturb=perturb,
                        trials=n, seed=seed, curve_every=curve_every)  # fmt: skip
    try:
        protocol.check()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    images = test[:n]
    g = torch.Generator(device="cpu").manual_seed(seed + 2)
    swapped = images.clone()
    if perturb == "mutation":
        for i in range(n):  # a test image of another class, drawn from the seed
            others = test[data.labels[test] != data.labels[images[i]]]
            swapped[i] = others[int(torch.randint(len(others), (1,), generator=g))]
    now = {"images": images}
    steps = protocol.measured_steps()
    values: dict[str, dict[int, torch.Tensor]] = {name: {} for name in METRICS}
    before: dict[str, torch.Tensor] = {}

    def measure(x: torch.Tensor) -> dict[str, torch.Tensor]:
        index = now["images"]
        inputs, labels = data.images[index], data.labels[index]
        cells = task.cells(inputs)[:, 0]
        right = (task.votes(x) == labels.view(-1, 1, 1)).float() * cells
        pixel = right.sum((1, 2)) / cells.sum((1, 2)).clamp_min(1.0)
        image = (task.predict(x, inputs) == labels).float()
        return {"pixel_accuracy": pixel.cpu(), "image_accuracy": image.cpu()}

    def observe(step: int, x: torch.Tensor):
        if step == perturb_at and perturb == "mutation":
            before.update(measure(x))
            now["images"] = swapped
        if step in steps:
            for name, v in measure(x).items():
                values[name][step] = v
        return None

    x = model.seed(n)
    for name, v in measure(x).items():
        values[name][0] = v
    model.grow(final, x, seed, lambda step: data.images[now["images"]], observe)
    a, b = stage1
    out: dict[str, Any] = {"metrics": {}, "curve": {}}
    for name in METRICS:
        v = values[name]
        s1 = torch.stack([v[s] for s in range(a, b + 1)]).mean(0)
        s2, d, s3 = v[stage2], v[perturb_at], v[final]
        means = [float(t.mean()) for t in (s2, d, s3)]
        rec = recovery(*means, True) if perturb == "mutation" else float("nan")
        out["metrics"][name] = {
            "higher_is_better": True,
            "stage1": _stats(s1.tolist()),
            "stage2": _stats(s2.tolist()),
            "before_perturbation": _stats(before[name].tolist()) if name in before else None,
            "perturbed": _stats(d.tolist()),
            "stage3": _stats(s3.tolist()),
            "recovery": _nan_to_none(rec),
        }
        ordered = sorted(v)
        curve = torch.stack([v[s] for s in ordered])
        spread = curve.std(1, unbiased=False).tolist()
        out["curve"][name] = {"steps": ordered, "mean": curve.mean(1).tolist(), "std": spread}
    classes = model.spec.task.classes
    document = {
        "model": model.path,
        "task": "classify",
        "config": model.nca.config.to_dict(),
        "provenance": model.provenance,
        "target": f"{model.spec.task.options.get('source', '?')} test split: {n} of {len(test)} images",
        "grid": list(model.spec.task.grid),
        "device": str(dev),
        "engine": model.engine,
        "protocol": {**protocol.to_dict(), "metrics": list(METRICS), "classes": classes},
        **out,
        "trials": [
            {
                "trial": i,
                "image": int(images[i]),
                "class": classes[int(data.labels[images[i]])],
                **({"mutated_to": classes[int(data.labels[swapped[i]])]} if perturb == "mutation" else {}),
            }
            for i in range(n)
        ],
    }
    return stages_report(document, protocol, "input switched")
