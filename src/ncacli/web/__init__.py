"""The interactive page: one self-contained HTML file that runs a model on the browser's GPU."""

from __future__ import annotations

import html
import json
from importlib import resources

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
) -> str:
    """The page for ``model``: its program and weights, the code and the styles, in one HTML document."""
    data = {
        "program": page_program(model),
        "grid": list(grid),
        "scale": scale,
        "steps_per_frame": steps_per_frame,
        "seed": {"kind": spec.task.seed_kind, "positions": spec.task.seed_positions or [[0.5, 0.5]]},
        "background": spec.task.background,
        "classes": spec.task.classes or [str(i) for i in range(model.config.condition_channels)],
        "condition": condition,
    }
    files = resources.files("ncacli.web")
    template = files.joinpath("page.html").read_text(encoding="utf-8")
    script = files.joinpath("page.js").read_text(encoding="utf-8")
    # nothing inside the two script elements may close them
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    script = script.replace("</script", "<\\/script")
    return template.replace("{{TITLE}}", html.escape(title)).replace("{{DATA}}", payload).replace("{{SCRIPT}}", script)
