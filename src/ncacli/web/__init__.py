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
    start: dict[str, Any] | None = None,
) -> str:
    """The page for ``model``: its program and weights, the code and the styles, in one HTML document.

    ``start``: what the page starts from, as the model's task gives it (:meth:`ncacli.tasks.Task.page_start`):
    ``{"condition": class}``, or a classifier's input images and class colours, whose input the user draws."""
    data = {
        "program": page_program(model),
        "task": spec.task.name,
        "grid": list(grid),
        "scale": scale,
        "steps_per_frame": steps_per_frame,
        "seed": {"kind": spec.task.seed_kind, "positions": spec.task.seed_positions or [[0.5, 0.5]]},
        "background": spec.task.background,
        "classes": spec.task.classes or [str(i) for i in range(model.config.condition_channels)],
        "condition": 0,
        **(start or {}),
    }
    files = resources.files("ncacli.web")
    template = files.joinpath("page.html").read_text(encoding="utf-8")
    script = files.joinpath("page.js").read_text(encoding="utf-8")
    # nothing inside the two script elements may close them
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    script = script.replace("</script", "<\\/script")
    return template.replace("{{TITLE}}", html.escape(title)).replace("{{DATA}}", payload).replace("{{SCRIPT}}", script)
