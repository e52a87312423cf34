"""The style metric (`nca evaluate --metric style`): the texture loss's distance, fixed projections, texture
models keeping their style image, and the verb on a shrunk texture run (random VGG16: a pipeline test)."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from conftest import TINY, last_json, one_error_line, run_cli
from ncacli.errors import NcaError, UsageError
from ncacli.evaluation.metrics import make_metrics
from ncacli.evaluation.style_metric import style_factory, style_rgb
from ncacli.losses import style as style_mod
from ncacli.losses.style import load_style_image

SHORT = ["--trials", "2", "--stage1", "2-3", "--stage2", "4", "--perturb-at", "5", "--final", "8"]
CHANNELS = 8


def as_state(rgb: torch.Tensor) -> torch.Tensor:
    """RGB ``(B, 3, H, W)`` → an opaque state ``(B, CHANNELS, H, W)`` that shows exactly that RGB."""
    state = torch.zeros(rgb.shape[0], CHANNELS, *rgb.shape[-2:])
    state[:, :3], state[:, 3] = rgb, 1.0
    return state


@pytest.fixture(scope="module")
def image(style_png) -> torch.Tensor:
    return load_style_image(str(style_png), 24)[0]  # (3, 24, 24), as a texture run with style_size=24 keeps it


@pytest.fixture(scope="module")
def texture_run(tmp_path_factory, style_png) -> Path:
    """A texture model trained for 3 iterations (the texture preset shrunk, a random VGG16)."""
    from ncacli.cli import main

    out = tmp_path_factory.mktemp("runs") / "texture"
    flags = ["--style", str(style_png), "--set", "objectives.style.vgg_weights=random"]
    flags += ["--set", "objectives.style.size=24"]
    code = main(["train", "--preset", "texture", "--iters", "3", "--out", str(out), *TINY, *flags])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def old_texture(tmp_path_factory, texture_run) -> Path:
    """The same model as a file saved before texture models kept their style image, outside its run directory."""
    from ncacli.io.files import pack, unpack

    tensors, meta = unpack((texture_run / "model.safetensors").read_bytes(), "model")
    del tensors["task.style"]
    path = tmp_path_factory.mktemp("old") / "texture-old.safetensors"
    path.write_bytes(pack(tensors, meta))
    return path


# --- the metric ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sot", "gram"])
def test_zero_for_the_style_itself_and_growing_with_noise(image, kind):
    metric = style_factory("cpu", weights="random", loss=kind)
    assert metric.name == "style" and metric.higher_is_better is False
    own = metric(as_state(image[None]), image)
    noise = torch.rand(image.shape, generator=torch.Generator().manual_seed(1)) - 0.5
    noisy = [metric(as_state((image + level * noise).clamp(0, 1)[None]), image).item() for level in (0.2, 0.6, 2.0)]
    flat = metric(as_state(torch.full((1, 3, 24, 24), 0.5)), image).item()
    # the same picture through the same network: only rounding is left (float32 sums of 10⁴–10⁵ terms)
    assert own.shape == (1,) and abs(own.item()) < 1e-5 * noisy[0], (own, noisy)
    assert noisy[0] < noisy[1] < noisy[2], noisy
    assert flat > noisy[0], (flat, noisy)


def test_deterministic_and_seeded(image):
    state = as_state(torch.rand(3, 3, 20, 20, generator=torch.Generator().manual_seed(2)))
    metric = style_factory("cpu", weights="random")
    first = metric(state, image)
    assert first.shape == (3,) and torch.isfinite(first).all()
    assert torch.equal(metric(state, image), first)  # the projections do not change between calls
    assert torch.equal(style_factory("cpu", weights="random", seed=0)(state, image), first)
    assert not torch.allclose(style_factory("cpu", weights="random", seed=1)(state, image), first)
    gram = style_factory("cpu", weights="random", loss="gram")
    assert not torch.allclose(gram(state, image), first)


def test_the_style_image_rgb_or_rgba_any_size_or_bound(image):
    state = as_state(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3)))
    metric = style_factory("cpu", weights="random")
    rgb = metric(state, image)
    rgba = torch.cat([image, torch.ones(1, *image.shape[1:])])  # opaque premultiplied RGBA of the same picture
    assert torch.equal(metric(state, rgba), rgb)
    half = image[:, :12, :20]  # another size than the grid, not square
    assert torch.isfinite(metric(state, half)).all() and not torch.allclose(metric(state, half), rgb)
    bound = style_factory("cpu", weights="random", image=image)
    assert torch.equal(bound(state, torch.zeros(4, 16, 16)), rgb)  # a bound image wins over the target argument
    fitted = style_rgb(image, size=12)
    assert fitted.shape == (1, 3, 12, 12) and 0 <= fitted.min() <= fitted.max() <= 1
    with pytest.raises(ValueError, match="3 or 4, H, W"):
        style_rgb(torch.zeros(2, 8, 8))


def test_state_background_is_the_models(image):
    state = as_state(image[None])
    state[:, 3] = 0.0  # transparent: over white a washed-out picture, with "none" the texture itself
    white = style_factory("cpu", weights="random", background="white")(state, image).item()
    none = style_factory("cpu", weights="random", background="none")(state, image).item()
    assert abs(none) < 1e-5 * white, (none, white)


def test_make_metrics_passes_the_style_options(image):
    made = make_metrics(["mse", "style"], "cpu", {"style": {"weights": "random", "loss": "gram", "image": image}})
    assert set(made) == {"mse", "style"}
    state = as_state(image[None])
    assert abs(made["style"](state, torch.zeros(4, 24, 24)).item()) < 1e-4  # compared with the bound image
    with pytest.raises(UsageError, match="sot, gram"):
        style_factory("cpu", weights="random", loss="wasserstein")


def test_offline_without_vgg_weights_is_the_training_error(tmp_path, monkeypatch):
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setattr(style_mod, "_VGG_CACHE", {})

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    try:
        with pytest.raises(NcaError) as info:
            style_factory("cpu")
        training = style_mod._missing_message("[Errno -2] Name or service not known")  # what StyleLoss raises
    finally:
        torch.hub.set_dir(previous)
    message = str(info.value)
    assert "\n" not in message and message == training
    assert "--vgg-weights FILE" in message and str(tmp_path / "hub" / "checkpoints") in message


# --- texture models keep their style image --------------------------------------------------------------------


def test_a_texture_model_keeps_its_style_image(texture_run, image, old_texture):
    import ncacli.api as nca

    model = nca.load(texture_run / "model.safetensors")
    assert torch.equal(model.task.style, image)  # what the style loss compared with, exactly
    assert model.provenance["style_size"] == 24
    old = nca.load(old_texture)  # files from before still load
    assert old.task.style is None and old.spec == model.spec


def test_a_damaged_style_tensor_is_refused(tmp_path, texture_run):
    from ncacli.io.files import pack, unpack

    tensors, meta = unpack((texture_run / "model.safetensors").read_bytes(), "model")
    tensors["task.style"] = torch.full((3, 4, 4), float("nan"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(pack(tensors, meta))
    import ncacli.api as nca

    with pytest.raises(NcaError, match="style tensor is not a finite"):
        nca.load(bad)


# --- nca evaluate ----------------------------------------------------------------------------------------------


def test_evaluate_a_texture_with_the_style_metric(capsys, texture_run, tmp_path):
    import ncacli.api as nca

    path = texture_run / "model.safetensors"
    plot = tmp_path / "curve.png"
    args = ["--perturb", "damage", "--shape", "left", *SHORT, "--vgg-weights", "random", "--json", "--plot", plot]
    code, out, err = run_cli(capsys, "evaluate", path, *args)
    assert code == 0, err
    doc = last_json(out)
    assert list(doc["metrics"]) == ["style"] and doc["protocol"]["metrics"] == ["style"]  # the texture's default
    assert doc["protocol"]["vgg_weights"] == "random" and doc["protocol"]["style_loss"] == "sot"
    assert doc["grid"] == [16, 16] and doc["target"].startswith("style ")
    style = doc["metrics"]["style"]
    assert style["higher_is_better"] is False
    for stage in ("stage1", "stage2", "perturbed", "stage3"):
        assert style[stage]["n"] == 2 and style[stage]["mean"] > 0
    assert "recovery" in style and "recovery_per_trial" in style
    assert plot.read_bytes().startswith(b"\x89PNG") and "style ↓" in err and "random VGG16" in err
    # stage 2 is the metric of the states grown for 4 steps, recomputed here (rounding of another batch order)
    model = nca.load(path)
    grown = model.grow(4, model.seed(2))
    metric = style_factory("cpu", weights="random", background=model.spec.task.background)
    expected = float(metric(grown, model.task.style).mean())
    assert style["stage2"]["mean"] == pytest.approx(expected, rel=1e-4)
    # the review's 50% horizontal removal is the default cut of a texture
    code, out, err = run_cli(capsys, "evaluate", path, *SHORT, "--vgg-weights", "random", "--json")
    assert code == 0, err
    doc = last_json(out)
    assert doc["protocol"]["shape"] == "top" and list(doc["metrics"]) == ["style"]


def test_an_old_texture_file_takes_style(capsys, texture_run, old_texture, style_png):
    code, _, err = run_cli(capsys, "evaluate", old_texture, *SHORT, "--vgg-weights", "random")
    assert code != 0
    one_error_line(err, str(old_texture), "no style image", "--style FILE")
    new = run_cli(capsys, "evaluate", texture_run / "model.safetensors", *SHORT, "--vgg-weights", "random", "--json")
    old = run_cli(capsys, "evaluate", old_texture, *SHORT, "--vgg-weights", "random", "--style", style_png, "--json")
    assert new[0] == 0 and old[0] == 0, old[2]
    # fitted into the training's style_size (from the model's history): the same image, the same arithmetic
    assert last_json(old[1])["metrics"] == last_json(new[1])["metrics"]


def test_bad_style_inputs_are_one_line(capsys, texture_run, tiny_model, tmp_path, style_png):
    model = texture_run / "model.safetensors"
    plot = tmp_path / "curve.png"
    code, out, err = run_cli(capsys, "evaluate", tiny_model, "--metric", "style", *SHORT, "--plot", plot)
    assert code == 1 and not out
    one_error_line(err, str(tiny_model), "image task", "no style image", "--style FILE")
    missing = tmp_path / "missing.png"
    code, out, err = run_cli(capsys, "evaluate", model, "--style", missing, *SHORT, "--vgg-weights", "random")
    assert code == 1 and not out
    one_error_line(err, str(missing), "not found")
    absent = tmp_path / "absent.pth"
    code, out, err = run_cli(capsys, "evaluate", model, "--vgg-weights", absent, *SHORT, "--plot", plot)
    assert code == 1 and not out
    one_error_line(err, str(absent), "VGG16 weights file not found")
    code, _, err = run_cli(capsys, "evaluate", tiny_model, "--metric", "mse", "--style", style_png, *SHORT)
    assert code == 2
    one_error_line(err, "--style", "--metric style")
    code, _, err = run_cli(capsys, "evaluate", model, "--target", style_png, *SHORT, "--vgg-weights", "random")
    assert code == 2
    one_error_line(err, "--target", "--metric")
    assert not plot.exists()


def test_an_image_model_measured_against_a_style(capsys, tiny_model, style_png):
    code, out, err = run_cli(
        capsys, "evaluate", tiny_model, "--metric", "mse,style", "--style", style_png, "--vgg-weights", "random",
        *SHORT, "--json",
    )  # fmt: skip
    assert code == 0, err
    doc = last_json(out)
    assert set(doc["metrics"]) == {"mse", "style"} and doc["protocol"]["style"] == f"style {style_png}"
    assert doc["protocol"]["shape"] == "circle"  # a growing model's default cut is unchanged
