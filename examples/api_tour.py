"""A tour of the Python API (docs/api.md): load, grow, damage, regrow, picture, evaluate, train.

Run from the repository root: ``python examples/api_tour.py [OUT_DIR]``; tests/test_api.py runs it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import ncacli.api as nca
from ncacli.io.images import png_bytes

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
out.mkdir(parents=True, exist_ok=True)

model = nca.load("docs/lizard.safetensors")  # a 0.1.0 file: its spec is read from its config and provenance
print("task", model.spec.task.name, "grid", model.spec.task.grid, "engine", model.engine)
grown = model.grow(150)
hole = nca.damage(grown, "circle", (0.5, 0.5), 0.25)
healed = model.grow(150, state=hole)
alive = [int((s[:, 3] > 0.1).sum()) for s in (grown, hole, healed)]
print("alive cells: grown", alive[0], "damaged", alive[1], "healed", alive[2])
picture = (model.picture(healed)[0].permute(1, 2, 0) * 255).round().byte().numpy()
(out / "healed.png").write_bytes(png_bytes(picture))

result = nca.evaluate(model, trials=2, metrics=["mse"], final=200)
print("recovery % by MSE:", round(result["metrics"]["mse"]["recovery"] or float("nan"), 1))

cfg = nca.config("growing", sets=["hidden=16", "steps_min=8", "steps_max=12"], iters=4, size=10, padding=3,
                 device="cpu")  # fmt: skip
run = nca.train(cfg, out / "run")
print("trained", run["iterations"], "iterations →", run["model"])
print("reloaded task:", nca.load(run["model"]).spec.task.name)
