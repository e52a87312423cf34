"""Objectives without a target image: CLIP, style, their sum, the pixels baseline, and the model options
nca-clip relied on (tanh-bounded updates, signal channels, random-colour seeds, cosine schedule)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from conftest import TINY, last_json, one_error_line, run_cli
from ncacli.config import resolve
from ncacli.engine import NCA, ModelConfig, make_seed
from ncacli.engine.visible import visible_rgb
from ncacli.io.model_file import describe, load_model
from ncacli.losses.objective import make_objective
from ncacli.train.loop import Trainer, lr_factor
from ncacli.train.pixels import PixelTrainer

SMALL = ["size=12", "padding=2", "batch=2", "steps_min=8", "steps_max=10", "hidden=32", "device='cpu'", "lr=0.004"]


def clip_options(tiny_clip, **more):
    """``[objectives.clip]`` of the tiny CLIP."""
    return {"clip": {"prompt": "fire", "model": str(tiny_clip[0]), "pretrained": str(tiny_clip[1]), **more}}


def style_options(style_png, **more):
    """``[objectives.style]`` of the test picture at 24 pixels, through random VGG16 weights."""
    return {"style": {"image": str(style_png), "vgg_weights": "random", "size": 24, **more}}


def fixed_loss(trainer: Trainer) -> float:
    """The objective on a fixed rollout with fixed random views and projections."""
    g = torch.Generator()
    g.manual_seed(5)
    with torch.no_grad():
        x = trainer.model.rollout(trainer.seeds(2, g), 9, g)
        objective = trainer.task.objectives[0]
        kept, objective.generator = objective.generator, g
        value = objective(x).mean().item()
        objective.generator = kept
    return value


def test_tanh_bounds_every_update():
    torch.manual_seed(0)
    model = NCA(ModelConfig(update_tanh=True, fire_rate=1.0, alive_masking=False))
    torch.nn.init.normal_(model.update.net[-1].weight, std=10.0)
    x = torch.rand(2, 16, 8, 8)
    dx = model(x) - x
    assert dx.abs().max() <= 1.0 and dx.abs().max() > 0.9


def test_signal_channels_diffuse_and_conserve_on_a_torus():
    config = ModelConfig(signal_channels=4, signal_steps=3, padding_mode="circular")
    model = NCA(config)
    x = torch.zeros(1, 16, 9, 9)
    x[0, 12:, 4, 4] = 1.0  # a point of morphogen in each signal channel
    x[0, 4, 4, 4] = 1.0  # and in a plain hidden channel
    out = model.diffuse(x)
    assert torch.equal(out[:, :12], x[:, :12])  # only the last 4 channels diffuse
    assert torch.allclose(out[:, 12:].sum(dim=(2, 3)), torch.ones(1, 4))  # mass kept
    assert out[0, 12, 4, 4] < 0.5 and (out[0, 12] > 0).sum() == 25  # spread 3 cells out in a diamond
    with pytest.raises(ValueError, match="signal_channels"):
        NCA(ModelConfig(signal_channels=13))


def test_seed_kinds():
    g = torch.Generator()
    g.manual_seed(0)
    coloured = make_seed(3, 16, 8, 8, kind="random_color", generator=g)
    centre = coloured[:, :, 4, 4]
    assert torch.all(centre[:, 3] == 1) and torch.all(centre[:, 4:] == 0)
    assert not torch.equal(centre[0, :3], centre[1, :3])  # a colour per sample
    assert coloured.sum() == centre.sum()  # one cell only
    g.manual_seed(0)
    assert torch.equal(make_seed(3, 16, 8, 8, kind="random_color", generator=g), coloured)
    assert make_seed(2, 12, 8, 8, kind="zeros").abs().sum() == 0


def test_visible_rgb_and_its_gradient_at_the_bounds():
    x = torch.zeros(1, 4, 2, 2, requires_grad=True)
    assert torch.equal(visible_rgb(x, "white"), torch.ones(1, 3, 2, 2))
    assert torch.equal(visible_rgb(x, "black"), torch.zeros(1, 3, 2, 2))
    visible_rgb(x, "none").sum().backward()
    assert torch.all(x.grad[:, :3] == 1)  # an all-zero texture seed can still learn


def test_cosine_and_step_schedules():
    cosine = resolve(flags={"lr_schedule": "cosine", "iters": 100, "lr": 2e-3, "lr_min": 1e-4})
    assert lr_factor(cosine, 0) == 1.0 and math.isclose(lr_factor(cosine, 100) * 2e-3, 1e-4)
    assert math.isclose(lr_factor(cosine, 50) * 2e-3, (2e-3 + 1e-4) / 2)
    step = resolve()
    assert lr_factor(step, 1999) == 1.0 and math.isclose(lr_factor(step, 2000), 0.1)
    plain = resolve(flags={"lr_schedule": "cosine", "iters": 100, "lr_min": 0.0})
    warm = resolve(flags={"lr_schedule": "cosine", "iters": 100, "lr_min": 0.0, "lr_warmup": 10})
    assert math.isclose(lr_factor(warm, 0), 0.1) and math.isclose(lr_factor(warm, 4), 0.5 * lr_factor(plain, 4))
    assert all(lr_factor(warm, i) == lr_factor(plain, i) for i in (9, 50, 100))


def test_adam_s_betas_and_the_global_gradient_clip_reach_the_step():
    """The review's optimiser: Adam with betas (0.5, 0.95), the gradient clipped to a global norm before the step."""
    flags = {"adam_betas": [0.5, 0.95], "grad_norm": False, "grad_clip": 1e-9, "size": 8, "padding": 2, "batch": 2,
             "steps_min": 3, "steps_max": 4}  # fmt: skip
    trainer = Trainer(resolve(flags=flags), torch.rand(4, 12, 12), torch.device("cpu"))
    assert trainer.optimizer.param_groups[0]["betas"] == (0.5, 0.95)
    seen = []
    clip = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        params = list(params)
        norm = clip(params, max_norm, *a, **k)
        seen.append(float(torch.sqrt(sum((p.grad**2).sum() for p in params if p.grad is not None))))
        return norm

    torch.nn.utils.clip_grad_norm_ = spy
    try:
        trainer.step()
    finally:
        torch.nn.utils.clip_grad_norm_ = clip
    assert len(seen) == 1 and seen[0] <= 1e-9 * 1.01


def test_objective_is_the_weighted_sum_of_its_terms(target_png):
    from ncacli.losses.mse import MSELoss
    from ncacli.losses.regularisers import OverflowLoss, TVLoss

    config = resolve(flags={"tv_weight": 0.5, "overflow_weight": 2.0, "loss_weights": {"mse": 3.0}})
    target = torch.rand(4, 8, 8)
    objective = make_objective(config, target)
    x = torch.randn(2, 16, 8, 8)
    expected = 3.0 * MSELoss(target)(x) + 0.5 * TVLoss(config)(x) + 2.0 * OverflowLoss()(x)
    assert torch.allclose(objective(x), expected)
    assert set(objective.last) == {"mse", "tv", "overflow"}
    inside = torch.rand(1, 16, 4, 4) * 0.9 + 0.05
    assert OverflowLoss()(inside).item() == 0 and OverflowLoss()(inside + 1.5).item() > 0


@pytest.mark.parametrize("kind", ["clip", "style", "style+clip"])
def test_training_lowers_each_objective(tiny_clip, style_png, kind):
    objectives = {}
    if "clip" in kind:
        objectives |= clip_options(tiny_clip, augmentations=2)
    if "style" in kind:
        objectives |= style_options(style_png)
    preset = "texture" if "style" in kind else "clip"
    config = resolve(preset, None, [*SMALL, "iters=25"], {"objectives": objectives, "loss": kind})
    trainer = Trainer(config, None, torch.device("cpu"))
    before = fixed_loss(trainer)
    records = [trainer.step() for _ in range(25)]
    assert fixed_loss(trainer) < 0.9 * before
    assert all(math.isfinite(r.loss) for r in records)
    if "clip" in kind:
        assert -1 <= records[-1].terms["clip_score"] <= 1
    if "style" in kind:
        assert records[-1].terms["style"] > 0


def test_pixels_baseline_lowers_the_loss(tiny_clip):
    flags = {"objectives": clip_options(tiny_clip), "task": "pixels"}
    config = resolve("clip", None, [*SMALL, "iters=20", "lr=0.05"], flags)
    trainer = PixelTrainer(config, None, torch.device("cpu"))
    losses = [trainer.step().loss for _ in range(20)]
    assert losses[-1] < losses[0] - 0.05
    assert trainer.state().shape == (1, 4, 16, 16)


def test_train_clip_records_the_prompt_and_renders(capsys, tmp_path, tiny_clip):
    out = tmp_path / "fire"
    args = ["--prompt", "fire", "--clip-model", tiny_clip[0], "--clip-pretrained", tiny_clip[1]]
    code, stdout, err = run_cli(capsys, "train", *args, "--iters", "6", "--out", out, *TINY)
    assert code == 0, err
    assert "preset: clip" in err
    model_path = last_json(stdout)["model"]
    info = describe(model_path)
    prov = info["provenance"]
    assert prov["prompt"] == "fire" and prov["loss"] == "clip" and prov["preset"] == "clip"
    task = info["spec"]["task"]
    assert task["name"] == "text" and task["seed_kind"] == "random_color" and task["background"] == "black"
    assert info["target"] is None
    assert info["config"]["update_tanh"] is True and info["config"]["padding_mode"] == "circular"
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"clip", "clip_score", "growth", "alive", "tv"} <= set(lines[-1])
    code, stdout, err = run_cli(capsys, "render", model_path, tmp_path / "fire.gif", "--steps", "8", "--json")
    assert code == 0, err
    frame = Image.open(tmp_path / "fire.gif").convert("RGB")
    assert frame.getpixel((0, 0)) == (0, 0, 0)  # dead cells on black, as the model was trained
    code, _, err = run_cli(capsys, "evaluate", model_path, "--metric", "mse")
    assert code == 1
    one_error_line(err, "no target image", "--target")
    model, _ = load_model(model_path)
    assert model.config.hidden == 32


def test_train_style_and_clip_with_weights(capsys, tmp_path, tiny_clip, style_png):
    out = tmp_path / "moss"
    args = ["--style", style_png, "--prompt", "mossy stones", "--loss", "style+clip"]
    args += ["--loss-weights", "style=1,clip=0.5", "--clip-model", tiny_clip[0], "--clip-pretrained", tiny_clip[1]]
    args += ["--vgg-weights", "random", "--set", "objectives.style.size=24"]
    code, stdout, err = run_cli(capsys, "train", *args, "--iters", "5", "--out", out, *TINY)
    assert code == 0, err
    prov = describe(last_json(stdout)["model"])["provenance"]
    assert prov["loss_weights"] == {"style": 1.0, "clip": 0.5} and prov["preset"] == "texture"
    assert prov["style"] == str(style_png) and prov["prompt"] == "mossy stones"
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert math.isclose(record["loss"], record["style"] + 0.5 * record["clip"] + record["overflow"], rel_tol=1e-5)


def test_train_pixels_writes_a_picture(capsys, tmp_path, tiny_clip):
    out = tmp_path / "pixels"
    args = ["--prompt", "fire", "--model", "pixels", "--clip-model", tiny_clip[0], "--clip-pretrained", tiny_clip[1]]
    code, stdout, err = run_cli(capsys, "train", *args, "--iters", "4", "--out", out, *TINY)
    assert code == 0, err
    result = last_json(stdout)
    assert result["image"] == str(out / "pixels.png") and Image.open(result["image"]).size == (16, 16)
    assert not (out / "model.safetensors").exists()


def test_objective_errors_are_one_line(capsys, tmp_path, tiny_clip):
    code, _, err = run_cli(capsys, "train", "--loss", "clip", "--iters", "1", "--out", tmp_path / "a", *TINY)
    assert code == 2
    one_error_line(err, "needs the option prompt", "--prompt")
    code, _, err = run_cli(capsys, "train", "--prompt", "x", "--loss", "clip+mse", "--loss-weights", "clip=a", *TINY)
    assert code == 2
    one_error_line(err, "--loss-weights")
    code, _, err = run_cli(capsys, "train", "--style", tmp_path / "none.jpg", "--vgg-weights", "random", *TINY)
    assert code == 1
    one_error_line(err, "none.jpg", "not found")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not weights")
    args = ["--prompt", "x", "--clip-model", tiny_clip[0], "--clip-pretrained", bad]
    code, _, err = run_cli(capsys, "train", *args, "--out", tmp_path / "b", *TINY)
    assert code == 1
    one_error_line(err, "bad.safetensors")
    assert not (tmp_path / "b").exists()  # nothing written for a run that could not start


def test_resumed_clip_run_matches_an_uninterrupted_one(tiny_clip):
    config = resolve("clip", None, [*SMALL, "iters=6"], {"objectives": clip_options(tiny_clip, augmentations=2)})
    straight = Trainer(config, None, torch.device("cpu"))
    for _ in range(6):
        straight.step()
    first = Trainer(config, None, torch.device("cpu"))
    for _ in range(3):
        first.step()
    tensors, meta = first.state_tensors()
    assert "target" not in tensors
    resumed = Trainer(config, None, torch.device("cpu"))
    resumed.load_state_tensors(tensors, meta)
    for _ in range(3):
        resumed.step()
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert math.isclose(resumed.optimizer.param_groups[0]["lr"], straight.optimizer.param_groups[0]["lr"])
