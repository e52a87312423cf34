"""A grow-digits model's evaluation (the NCAtorch review, Appendix A.5, Figure 18): are the grown digits
recognisable, how much do the samples of a class differ, and do they heal.

- **Recognised**: a small CNN (two 3×3 convolutions, 16 and 32 channels, each with a 2×2 max-pool, and a linear
  layer) is trained here, seeded, on the training split of the model's own data set (the pictures as the model
  grows them: brightness on black), a pixel of random shift each way; its accuracy on the held-out split is
  reported beside its accuracy on the grown digits. It never sees a grown digit.
- **Diversity**: per class, the per-pixel variance of the samples' brightness, averaged over the pixels, and the
  mean L1 distance between two samples; the same figures for as many of the class's held-out images, the data's
  own spread, beside them.
- **Healing**: each grown sample loses a disc (``--radius``, default 0.2 of the width, in the middle) and grows on
  as long again; reported: the recognised share after, and the recovery % of the picture,
  ``100 · (1 − MSE(healed, before) / MSE(damaged, before))``. ``--perturb none`` leaves it out.

``--trials`` samples a class (default 16), grown ``--final`` steps (default 96), fire masks from ``--seed``,
with classifier-free guidance at ``--guidance`` where given.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ncacli.evaluation.report import Report, Table

DEFAULT_STEPS = 96
DEFAULT_TRIALS = 16
SHOWN = 9  # samples a class in the figure (Figure 18's nine)


class DigitClassifier(nn.Module):
    """Brightness ``(B, 1, H, W)`` → class logits ``(B, K)``."""

    def __init__(self, classes: int, height: int, width: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.head = nn.Linear(32 * (height // 4) * (width // 4), classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def brightness(rgba: torch.Tensor) -> torch.Tensor:
    """Premultiplied RGBA ``(B, 4, H, W)`` → the picture on black, grey ``(B, 1, H, W)`` in [0, 1]."""
    return rgba[:, :3].clamp(0, 1).mean(1, keepdim=True)


def shifted(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each picture moved by up to one pixel each way (zeros coming in)."""
    padded = F.pad(x, (1, 1, 1, 1))
    h, w = x.shape[-2:]
    offsets = torch.randint(0, 3, (len(x), 2), generator=generator)
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])


def train_classifier(pictures: torch.Tensor, labels: torch.Tensor, classes: int, seed: int) -> DigitClassifier:
    """A :class:`DigitClassifier` trained on ``pictures`` ``(N, 1, H, W)`` (CPU): Adam 1e-3, batches of 64, as
    many epochs as make about 20,000 samples (at least 2, at most 15)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = DigitClassifier(classes, *pictures.shape[-2:])
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    epochs = max(2, min(15, 20000 // max(1, len(labels))))
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=g)
        for start in range(0, len(order), 64):
            pick = order[start : start + 64]
            loss = F.cross_entropy(net(shifted(pictures[pick], g)), labels[pick])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return net.eval()


def predict(net: DigitClassifier, pictures: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([net(pictures[i : i + 512]).argmax(1) for i in range(0, len(pictures), 512)])


def spread(pictures: torch.Tensor) -> dict[str, float]:
    """Samples of one class ``(n, 1, H, W)`` → their mean per-pixel variance and mean pairwise L1 distance."""
    n = len(pictures)
    flat = pictures.flatten(1)
    pairs = torch.cdist(flat, flat, p=1.0) / flat.shape[1]
    return {
        "variance": float(pictures.var(0, unbiased=False).mean()),
        "pairwise_l1": float(pairs.sum() / max(1, n * (n - 1))),
    }


def evaluate_digits(
    model: Any,
    trials: int | None = None,
    seed: int = 0,
    final: int | None = None,
    guidance: float | None = None,
    radius: float = 0.2,
    perturb: str | None = None,
    **options: Any,
) -> Report:
    """The document ``nca evaluate --json`` prints (see the module); the growing protocol's other options do not
    apply and are ignored."""
    from ncacli.engine import apply_damage, damage_mask
    from ncacli.evaluation.protocol import check_perturbation

    cut = check_perturbation(model, perturb, "damage", None)[0] == "damage"
    task, dev = model.task, model.device
    data = task.load_data()
    k, n = task.k, trials or DEFAULT_TRIALS
    steps = DEFAULT_STEPS if final in (None, 449) else int(final)  # 449: the growing protocol's default
    pictures = brightness(data.targets).cpu()
    train, test = data.train.cpu(), task.test_index().cpu()
    labels = data.labels.cpu()
    net = train_classifier(pictures[train], labels[train], k, seed)
    test_accuracy = float((predict(net, pictures[test]) == labels[test]).float().mean())

    classes = torch.arange(k).repeat_interleave(n)
    seeds = task.class_seeds(classes)
    h, w = seeds.shape[-2:]
    hole = damage_mask(h, w, "circle", (0.5, 0.5), radius, device=dev)
    runner = model.nca if guidance is None else task.guided(model.nca, guidance)
    kept: dict[str, torch.Tensor] = {}

    def observe(step: int, x: torch.Tensor) -> torch.Tensor | None:
        if step != steps:
            return None
        kept["grown"] = x.clone()
        kept["damaged"] = apply_damage(x, hole)
        return kept["damaged"]

    g = torch.Generator(device=dev).manual_seed(seed)
    with torch.no_grad():
        last = runner.rollout(seeds, 2 * steps if cut else steps, g, observe if cut else None)
    kept.setdefault("grown", last)
    grown = brightness(task.rgba(kept["grown"])).cpu()
    recognised = predict(net, grown) == classes
    healing: dict[str, Any] = {"damage": None, "recognised_after_damage": None, "recovery": None}
    if cut:  # --perturb none: no cut, no healing
        damaged, healed = (brightness(task.rgba(s)).cpu() for s in (kept["damaged"], last))
        mse = lambda a, b: (a - b).pow(2).flatten(1).mean(1)  # noqa: E731
        hurt, left = mse(damaged, grown), mse(healed, grown)
        healing = {
            "damage": {"shape": "circle", "center": [0.5, 0.5], "radius": radius, "at": steps, "regrown": steps},
            "recognised_after_damage": float((predict(net, healed) == classes).float().mean()),
            "recovery": float(100.0 * (1.0 - left.sum() / hurt.sum().clamp_min(1e-12))),
        }

    per_class: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(data.classes):
        mine = classes == c
        own = test[labels[test] == c][:n]
        per_class[name] = {
            "recognised": float(recognised[mine].float().mean()),
            **spread(grown[mine]),
            "data": spread(pictures[own]) if len(own) > 1 else None,
        }
    mean = lambda key: sum(v[key] for v in per_class.values()) / k  # noqa: E731
    data_rows = [v["data"] for v in per_class.values() if v["data"] is not None]
    document = {
        "model": str(model.path),
        "task": model.spec.task.name,
        "samples_per_class": n,
        "steps": steps,
        "seed": seed,
        "guidance": guidance,
        "metrics": ["recognised", "variance", "pairwise_l1", "recovery"],
        "classifier": {
            "kind": "a CNN trained here on the training split (see ncacli.tasks.digits_evaluation)",
            "train_images": len(train),
            "test_accuracy": test_accuracy,
        },
        "recognised": float(recognised.float().mean()),
        "variance": mean("variance"),
        "pairwise_l1": mean("pairwise_l1"),
        "data_variance": sum(r["variance"] for r in data_rows) / max(1, len(data_rows)),
        "data_pairwise_l1": sum(r["pairwise_l1"] for r in data_rows) / max(1, len(data_rows)),
        **healing,
        "classes": per_class,
    }
    columns = [("class", "left"), ("recognised", "right"), ("variance", "right"), ("pairwise L1", "right"),
               ("data's variance", "right"), ("data's L1", "right")]  # fmt: skip
    rows = []
    for name, v in per_class.items():
        d = v["data"] or {"variance": float("nan"), "pairwise_l1": float("nan")}
        rows.append([name, f"{v['recognised']:.0%}", f"{v['variance']:.4f}", f"{v['pairwise_l1']:.4f}",
                     f"{d['variance']:.4f}", f"{d['pairwise_l1']:.4f}"])  # fmt: skip
    rows.append(["all", f"{document['recognised']:.1%}", f"{document['variance']:.4f}",
                 f"{document['pairwise_l1']:.4f}", f"{document['data_variance']:.4f}",
                 f"{document['data_pairwise_l1']:.4f}"])  # fmt: skip
    guided = "" if guidance is None else f", guidance {guidance:g}"
    about = f"{n} samples a class, {steps} steps{guided}"
    caption = f"classifier: {test_accuracy:.1%} on {len(test)} held-out images"
    if cut:
        after, recovery = healing["recognised_after_damage"], healing["recovery"]
        caption += f"; after a disc of radius {radius:g} and {steps} more steps: {after:.1%} recognised, "
        caption += f"recovery {recovery:.1f}%"
    table = Table(f"{model.path} · {task.describe()} · {about}", columns, rows, caption=caption, bold_rows={k})
    shown = task.rgba(kept["grown"]).cpu()

    def figure(title: str) -> bytes:
        return figure_png(shown, classes, k, min(n, SHOWN))

    return Report(document, table, figure)


def figure_png(rgba: torch.Tensor, classes: torch.Tensor, k: int, shown: int) -> bytes:
    """Figure 18's panels: a row per class, its first ``shown`` samples then the spread map of all of them."""
    from ncacli.io.images import png_bytes, sample_tiles, tiled

    tiles = [t for c in range(k) for t in sample_tiles(rgba[classes == c], 2, "black", shown)]
    return png_bytes(tiled(tiles, shown + 1, 2))
