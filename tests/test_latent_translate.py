"""Latent translation: both stages, the autoencoder learning the inputs beside the targets, the encoded input in the
condition channels, the decoded picture judged against each pair (a critic included), every verb on the model
file alone, resume, and one line for each bad input; edges2emoji drawn from the SVG above 72 pixels."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from conftest import last_json, one_error_line, run_cli, trained_and_stirred

# 12 edges2emoji pairs at 32×32 (size 24 + 2·4), an autoencoder of 2 levels (4×): an 8×8 latent grid
RUN = ["--task", "latent-translate", "--data", "edges2emoji", "--size", "24", "--padding", "4", "--iters", "3",
       "--batch", "4", "--seed", "1", "--quiet", "--device", "cpu",
       "--set", "steps_min=6", "--set", "steps_max=8", "--set", "pool_size=8", "--set", "hidden=16",
       "--set", "channels=16", "--set", "checkpoint_every=2", "--set", "task.count=12",
       "--set", "task.test_fraction=0.25", "--set", "task.levels=2", "--set", "task.width=4",
       "--set", "task.codes=16", "--set", "task.ae_iters=4", "--set", "task.ae_batch=2",
       "--set", "task.latent=4"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_and_stirred(tmp_path_factory.mktemp("lt") / "run", *RUN)


def test_the_condition_is_the_encoded_input_and_the_model_carries_the_autoencoder(run):
    import ncacli.api as nca
    from ncacli.io.pairs import load_pairs

    model = nca.load(run / "model.safetensors")
    spec = model.spec
    assert spec.task.name == "latent-translate" and spec.task.grid == [8, 8] and spec.task.options["image"] == [32, 32]
    assert spec.model.condition_channels == 4 and spec.task.channels["latent"] == [4, 5, 6, 7]
    task = model.task
    pairs = load_pairs("edges2emoji", 24, 4, count=12, test_fraction=0.25, seed=0)
    labels = torch.tensor([0, 5])
    encoded = task.autoencoder.encode(task.input_rgba(pairs.inputs[labels]))
    assert torch.allclose(task.condition(labels), encoded, atol=1e-6)
    assert task.input_picture(encoded).shape == (2, 4, 32, 32)
    assert (run / "autoencoder.safetensors").is_file() and len(task.test_index()) == 3


def test_stage_one_learns_the_inputs_beside_the_targets(tmp_path, monkeypatch):
    """The autoencoder's pictures: each training pair's target, then its input drawn as dark lines on white."""
    import ncacli.tasks.autoencoder as stage
    from ncacli.cli import main
    from ncacli.io.pairs import load_pairs

    seen = {}
    real = stage.train_autoencoder

    def spy(pictures, *args, **kwargs):
        seen["pictures"] = pictures
        return real(pictures, *args, **kwargs)

    monkeypatch.setattr(stage, "train_autoencoder", spy)
    assert main(["train", *RUN, "--iters", "1", "--out", str(tmp_path / "r")]) == 0
    pairs = load_pairs("edges2emoji", 24, 4, count=12, test_fraction=0.25, seed=0)
    from ncacli.tasks.translate import TranslateTask

    want = torch.cat([pairs.targets[pairs.train], TranslateTask.input_rgba(pairs.inputs[pairs.train])])
    assert torch.equal(seen["pictures"], want)


def test_every_verb_on_the_model_file(capsys, tmp_path, run):
    model = run / "model.safetensors"
    code, out, err = run_cli(capsys, "evaluate", run, "--trials", "3", "--metric", "mse,ssim", "--stage1", "2-3",
                             "--stage2", "4", "--perturb-at", "5", "--final", "8", "--json")  # fmt: skip
    assert code == 0, err
    doc = last_json(out)
    assert doc["grid"] == [8, 8] and doc["metrics"]["ssim"]["stage3"]["n"] == 3
    code, _, err = run_cli(capsys, "render", model, tmp_path / "g.gif", "--steps", "4", "--input", "#1")
    assert code == 0, err
    with Image.open(tmp_path / "g.gif") as gif:
        # input | growth | target, one display pixel per picture pixel: the default 4 a cell over cells of 4 pixels
        assert gif.n_frames == 5 and gif.size == (3 * 32, 32)
    code, _, err = run_cli(capsys, "grow", model, "--steps", "4", "--out", tmp_path / "g.png")
    assert code == 0, err
    with Image.open(tmp_path / "g.png") as png:
        assert png.size == (32, 32)  # the decoded picture
    code, _, err = run_cli(capsys, "render", model, tmp_path / "p.html")
    one_error_line(err, "page", ".gif")
    assert not (tmp_path / "p.html").exists()


def test_resume_continues_and_a_critic_trains_beside_it(capsys, tmp_path, run):
    out = tmp_path / "w"
    args = [*RUN, "--loss", "l1+wgan-gp", "--autoencoder", str(run / "autoencoder.safetensors"), "--iters", "2"]
    code, _, err = run_cli(capsys, "train", *args, "--out", out)
    assert code == 0, err
    assert not (out / "autoencoder-metrics.jsonl").exists()  # reused, not trained again
    code, _, err = run_cli(capsys, "train", "--resume", out, "--iters", "3", "--quiet")
    assert code == 0, err
    lines = [__import__("json").loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [1, 2, 3]
    assert {"l1", "wgan-gp", "critic", "guide"} <= set(lines[-1])


def test_bad_inputs_are_one_line(capsys, tmp_path, run):
    code, _, err = run_cli(capsys, "train", *RUN, "--size", "26", "--out", tmp_path / "a")
    one_error_line(err, "34×34", "4× compression")
    code, _, err = run_cli(capsys, "train", "--preset", "translate", "--autoencoder", run / "autoencoder.safetensors",
                           "--out", tmp_path / "b")  # fmt: skip
    one_error_line(err, "--autoencoder", "translate run")
    code, _, err = run_cli(capsys, "train", *RUN, "--set", "channels=8", "--out", tmp_path / "c")
    one_error_line(err, "channels (8)")
    for name in ("a", "b", "c"):
        assert not (tmp_path / name).exists()


def test_edges2emoji_above_72_pixels_is_drawn_from_the_svg():
    from ncacli.io.pairs import load_pairs

    big = load_pairs("edges2emoji", 144, 0, count=2, test_fraction=0.5, seed=0)
    small = load_pairs("edges2emoji", 72, 0, count=2, test_fraction=0.5, seed=0)
    assert big.targets.shape[-1] == 144 and small.targets.shape[-1] == 72
    down = torch.nn.functional.avg_pool2d(big.targets, 2)
    assert (down - small.targets).abs().mean() < 0.03  # the same drawing, not an upscaled PNG
