"""The proof of the door: a task from outside the toolkit (``examples/nca-colourise``: an NCA that paints a grey
picture, held in a channel the update only reads), installed by its own entry point, runs through every verb.
Nothing under ``src/`` knows it."""

from __future__ import annotations

import json
import os
import tomllib

import pytest

from conftest import ROOT, run_nca
from test_plugins import install_metadata

EXAMPLE = ROOT / "examples" / "nca-colourise"
SMALL = ["--batch", "2", "--set", "task.size=12", "--set", "hidden=16", "--set", "channels=8",
         "--set", "steps_min=8", "--set", "steps_max=12"]  # fmt: skip


@pytest.fixture(scope="module")
def colourise(tmp_path_factory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("site")
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    install_metadata(site, project["name"], project["entry-points"])
    return {"PYTHONPATH": os.pathsep.join([str(site), str(EXAMPLE / "src"), os.environ.get("PYTHONPATH", "")])}


def ok(proc) -> str:
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def refused(proc, code: int, *needles: str) -> None:
    err = proc.stderr.decode()
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == code and len(lines) == 1 and lines[0].startswith("nca: error: "), err
    assert all(needle in lines[0] for needle in needles), (needles, lines[0])


def test_nothing_in_the_toolkit_knows_the_task():
    assert not [p for p in (ROOT / "src").rglob("*") if p.is_file() and b"colouris" in p.read_bytes().lower()]


def test_a_task_from_outside_runs_through_every_verb(colourise, tmp_path):
    entries = json.loads(ok(run_nca("plugins", "--json", env=colourise)))["entries"]
    task = next(e for e in entries if e["kind"] == "tasks" and e["name"] == "colourise")
    assert task["package"] == "nca-colourise" and task["options"] == {"image": "str", "size": "int"}

    run = tmp_path / "run"
    ok(run_nca("train", "--task", "colourise", "--iters", "2", "--out", run, *SMALL, env=colourise))
    summary = json.loads(ok(run_nca("train", "--resume", run, "--iters", "3", env=colourise)).splitlines()[-1])
    assert summary["iterations"] == 3
    model = run / "model.safetensors"

    grown = json.loads(ok(run_nca("grow", model, "-n", "6", "--out", tmp_path / "a.png", "--json", env=colourise)))
    assert grown["shape"][1:] == [8, 8, 12] and (tmp_path / "a.png").is_file()  # coffee: 12 × 8 cells
    other = ["grow", model, "-n", "6", "--input", "skimage:astronaut", "--out", tmp_path / "b.safetensors"]
    ok(run_nca(*other, env=colourise))
    refused(run_nca("grow", model, "--condition", "1", "--out", tmp_path / "c.png", env=colourise), 2,
            "--condition: a colouring model takes --input")  # fmt: skip

    video = json.loads(ok(run_nca("render", model, tmp_path / "v.gif", "-n", "6", "--json", env=colourise)))
    assert video["frames"] == 7 and video["input"] == "skimage:coffee"
    from PIL import Image

    with Image.open(tmp_path / "v.gif") as gif:  # its own frame: the grey input beside the colours
        assert gif.size == (2 * 12 * 4 + 2, 8 * 4)
    refused(run_nca("render", model, tmp_path / "p.html", env=colourise), 1, "the page does not show 'colourise'")

    document = json.loads(ok(run_nca("evaluate", run, "--trials", "2", "--final", "20", "--json", env=colourise)))
    assert document["task"] == "colourise" and document["trials"] == 2 and document["steps"] == 20
    assert 0 < document["grey_error"] and 0 <= document["colour_error"] <= 1
    refused(run_nca("evaluate", run, "--plot", tmp_path / "p.png", env=colourise), 2, "draw no plot")
    assert not any((tmp_path / name).exists() for name in ("c.png", "p.html", "p.png"))
