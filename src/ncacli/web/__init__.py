"""The interactive page: one self-contained HTML file that runs a model on the browser's GPU."""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

from ncacli.engine.nca import NCA
from ncacli.spec import ModelSpec
from ncacli.web.program import page_program


def page_html(
    model: NCA,
    spec: ModelSpec,
    grid: tuple[int, int],
    scale: int,
    steps_per_frame: int,
    title: str,
    condition: int = 0,
    inputs: dict[str, Any] | None = None,
) -> str:
    """The page for ``model``: its program and weights, the code and the styles, in one HTML document.

    ``inputs``: a classifier's input images and class colours (:func:`classifier_inputs`); the page then
    reads its condition per cell from the input, which the user draws."""
    data = {
        "program": page_program(model),
        "task": spec.task.name,
        "grid": list(grid),
        "scale": scale,
        "steps_per_frame": steps_per_frame,
        "seed": {"kind": spec.task.seed_kind, "positions": spec.task.seed_positions or [[0.5, 0.5]]},
        "background": spec.task.background,
        "classes": spec.task.classes or [str(i) for i in range(model.config.condition_channels)],
        "condition": condition,
        **(inputs or {}),
    }
    files = resources.files("ncacli.web")
    template = files.joinpath("page.html").read_text(encoding="utf-8")
    script = files.joinpath("page.js").read_text(encoding="utf-8")
    # nothing inside the two script elements may close them
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    script = script.replace("</script", "<\\/script")
    return template.replace("{{TITLE}}", html.escape(title)).replace("{{DATA}}", payload).replace("{{SCRIPT}}", script)


def classifier_inputs(task: Any, grid: tuple[int, int], start: str | None = None) -> dict[str, Any]:
    """A classifier's page data: the class colours, the input it starts from (``start``: a class, its first test
    image, or ``#N``, test image N; default class 0) and the first test image of each class, to load from the page.

    Images are lists of their channels' ``H×W`` planes (float32 values, exactly), centred in ``grid`` when it is
    larger than the images."""
    import torch

    from ncacli.errors import UsageError
    from ncacli.tasks.classify import PALETTE

    names = task.spec.task.classes
    first = task.image_of(start or "0")
    examples = [int(i) for i in task.examples()]
    labels = task.load_data().labels
    images = task.condition(torch.tensor([first, *examples], device=task.device)).float().cpu()
    n, c, ih, iw = images.shape
    h, w = grid
    if h < ih or w < iw:
        raise UsageError(f"--grid {h}x{w}: a classifier's page needs at least its images' {ih}x{iw} cells")
    placed = torch.zeros(n, c, h, w)
    top, left = (h - ih) // 2, (w - iw) // 2
    placed[:, :, top : top + ih, left : left + iw] = images
    planes = placed.tolist()  # float32 values as Python floats: JSON carries them exactly
    return {
        "palette": [list(PALETTE[i % len(PALETTE)]) for i in range(len(names))],
        "input": {"channels": c, "image": planes[0], "about": task.about(first)},
        "examples": [
            {"class": names[int(labels[i])], "index": i, "image": planes[j + 1]} for j, i in enumerate(examples)
        ],
    }
