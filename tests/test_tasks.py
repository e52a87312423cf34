"""Every registered task, from the registry: its interface, and for each one that makes a model, a shrunk run
trained, saved, loaded back by name from the file, shown and evaluated (as the perceptions' tests do)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import TINY, run_cli
from ncacli.names import PERTURBATIONS
from ncacli.registry import TASKS
from ncacli.tasks.base import DatasetTask, Task

TASK_NAMES = sorted(TASKS)


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def recipe(name, target_png, tiny_clip, style_png) -> list[str] | None:
    """The CLI flags of a shrunk run of each task that writes a model (pixels writes a picture)."""
    clip = ["--prompt", "fire", "--clip-model", tiny_clip[0], "--clip-pretrained", tiny_clip[1],
            "--set", "clip_augmentations=2"]  # fmt: skip
    style = ["--style", style_png, "--set", "objectives.style.vgg_weights=random", "--set", "objectives.style.size=24"]
    return {
        "image": ["--target", target_png],
        "text": clip,
        "texture": style,
        "classify": ["--data", "digits", *sets("batch=4", "task.fresh=1", "mutation_count=1")],
        "grow-digits": sets("batch=4", "damage_count=1", "task.fresh=2"),
        "pixels": None,
        "latent": [
            "--emoji",
            "🦎",
            *sets("task.ae_iters=2", "task.width=4", "task.ae_batch=2"),
        ],
        "video": ["--data", "moving-digits", "--set", "task.videos=12", "--set", "task.length=8"],
        "translate": ["--data", "edges2emoji", *sets("task.count=8", "task.test_fraction=0.25")],
        "latent-inpaint": sets(
            "task.count=8", "task.test_fraction=0.25", "task.ae_iters=2", "task.width=4", "task.levels=1"
        ),
        "latent-translate": [
            "--data",
            "edges2emoji",
            *sets("task.count=8", "task.test_fraction=0.25", "task.ae_iters=2", "task.width=4", "task.ae_batch=2"),
        ],
    }[name]


@pytest.mark.parametrize("name", TASK_NAMES)
def test_the_interface(name):
    task = TASKS[name]
    assert issubclass(task, Task) and task.name == name and task.summary
    assert set(task.perturbations) <= set(PERTURBATIONS)
    assert task.capabilities <= {"page", "zoom"}
    options = getattr(task, "Options", None)
    if options is not None:
        assert dataclasses.is_dataclass(options)
        options()  # every option has a default


@pytest.mark.parametrize("name", TASK_NAMES)
def test_a_shrunk_run_round_trips(capsys, tmp_path, target_png, tiny_clip, style_png, name):
    import ncacli.api as nca

    flags = recipe(name, target_png, tiny_clip, style_png)
    if flags is None:
        pytest.skip(f"{name} writes a picture, not a model (tests/test_objectives.py trains it)")
    out = tmp_path / name
    code, _, err = run_cli(capsys, "train", "--task", name, "--iters", "3", "--out", out, *TINY, *flags)
    assert code == 0, err
    model = nca.load(out / "model.safetensors")
    assert model.spec.task.name == name and type(model.task) is TASKS[name]
    state = model.seed(2)
    reads_input = isinstance(model.task, DatasetTask) and model.spec.model.condition_channels  # a held-out input
    condition = model.task.condition(model.task.test_index()[:2]) if reads_input else None
    grown = model.grow(5, state, condition=condition)
    assert grown.shape == state.shape and torch.isfinite(grown).all()
    picture = model.picture(grown, condition)
    shown = [n * model.task.scale for n in model.spec.task.grid]  # a latent model's picture is decoded
    assert picture.shape == (2, 3, *shown) and 0 <= picture.min() <= picture.max() <= 1
    frame = model.task.frame(grown, condition, 3)
    panel = max(1, round(3 / model.task.scale)) * shown[1]  # a frame may show panels side by side (input, target)
    assert frame.dtype.name == "uint8" and frame.shape[1] % panel == 0 and frame.shape[1] >= panel
    perturb = next(p for p in model.task.perturbations if p != "mutation" or name == "classify")
    options = {"metrics": ["mse"]} if name != "classify" else {}
    if name in ("text", "texture"):
        options["target"] = str(target_png)  # no target of their own: compared with a picture named
        options["emoji"] = None
    doc = nca.evaluate(model, perturb=perturb, trials=2, stage1=(2, 3), stage2=4, perturb_at=5, final=8, **options)
    assert doc["task"] == name and doc["metrics"]


def test_a_task_of_its_own_evaluation_is_shown_by_the_verb(capsys, tmp_path, target_png):
    """A task whose ``evaluate`` returns just its document (a dict): ``nca evaluate`` shows its figures, prints
    it with ``--json``, and refuses ``--plot`` in one line (it draws none)."""
    from conftest import last_json
    from ncacli.tasks.image import ImageTask

    class Counted(ImageTask):
        name = "counted-cells"
        summary = "an image task that reports how many cells live"

        def evaluate(self, model, **options):
            grown = model.grow(8, model.seed(1))
            return {"model": model.path, "alive": int((grown[:, 3] > 0.1).sum()), "grown": {"steps": 8}}

    TASKS.register(Counted.name, Counted)
    try:
        out = tmp_path / "run"
        code, _, err = run_cli(capsys, "train", "--task", Counted.name, "--iters", "2", "--out", out, *TINY,
                               "--target", target_png)  # fmt: skip
        assert code == 0, err
        code, stdout, err = run_cli(capsys, "evaluate", out, "--json")
        assert code == 0, err
        document = last_json(stdout)
        assert set(document) == {"model", "alive", "grown"} and document["grown"] == {"steps": 8}
        assert "alive" in err and f"{document['alive']}" in err and "grown.steps" in err
        code, _, err = run_cli(capsys, "evaluate", out, "--plot", tmp_path / "p.png")
        assert code == 2 and "--plot: 'counted-cells' models draw no plot" in err
        assert not (tmp_path / "p.png").exists()
    finally:
        del TASKS[Counted.name]
