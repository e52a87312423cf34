"""The VGG16 style loss (sliced optimal transport and Gram) and its weights handling."""

from __future__ import annotations

import dataclasses
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ncacli.config import Config
from ncacli.errors import NcaError, UsageError
from ncacli.losses import style as style_mod
from ncacli.losses.style import STYLE_LAYERS, StyleLoss, build_vgg, gram, sliced_ot, vgg_cache_path

SIDE = 32
CHANNELS = 8


def _style_pixels() -> np.ndarray:
    """A 32×32 RGB texture: orange/blue stripes with a dark checker on top, period 8."""
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    img = np.zeros((SIDE, SIDE, 3), np.uint8)
    stripes = (xx // 4) % 2 == 0
    img[stripes] = (240, 140, 20)
    img[~stripes] = (30, 70, 210)
    checker = ((xx // 2) + (yy // 2)) % 4 == 0
    img[checker] = (20, 20, 20)
    return img


@pytest.fixture(scope="module")
def style_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("style") / "stripes.png"
    Image.fromarray(_style_pixels()).save(path)
    return path


@pytest.fixture(scope="module")
def vgg_model():
    """A torchvision VGG16 with a fresh random init (unlike the seeded "random" backbone)."""
    from torchvision.models import vgg16

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        return vgg16(weights=None).eval()


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory, vgg_model) -> Path:
    """``vgg_model``'s whole state dict saved with torch.save."""
    path = tmp_path_factory.mktemp("vgg") / "vgg16-local.pth"
    torch.save(vgg_model.state_dict(), path)
    return path


def style_loss(style_png: Path, seed: int = 0, background: str = "white", **options) -> StyleLoss:
    """The style loss of ``[objectives.style]`` ``options`` (``style_png`` at SIDE pixels, random VGG16 weights
    unless changed) under a config of ``seed`` and ``background``."""
    defaults = {"image": str(style_png), "vgg_weights": "random", "size": SIDE}
    return StyleLoss(None, dataclasses.replace(Config(), seed=seed, background=background), **{**defaults, **options})


def as_state(rgb: torch.Tensor) -> torch.Tensor:
    """RGB ``(B, 3, H, W)`` → an opaque state ``(B, CHANNELS, H, W)`` showing exactly that RGB."""
    state = torch.zeros(rgb.shape[0], CHANNELS, *rgb.shape[-2:])
    state[:, :3] = rgb
    state[:, 3] = 1.0
    return state


def style_state() -> torch.Tensor:
    return as_state(torch.from_numpy(_style_pixels()).permute(2, 0, 1)[None].float() / 255.0)


def noise_state(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return as_state(torch.rand(batch, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(seed)))


def grey_state(batch: int = 2) -> torch.Tensor:
    return as_state(torch.full((batch, 3, SIDE, SIDE), 0.5))


def seeded(loss: StyleLoss, seed: int) -> StyleLoss:
    loss.generator = torch.Generator().manual_seed(seed)
    return loss


# --- the distances themselves ---------------------------------------------------------------------------------------


def test_sliced_ot_is_a_distance_between_distributions():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 50, generator=g)
    permuted = x[:, :, torch.randperm(50, generator=g)]
    assert sliced_ot(permuted, x, 16, g).item() < 1e-10  # positions do not matter
    # a shift by c along every channel moves each unit projection p by c·Σp: the loss is c²·mean((Σp)²) > 0
    assert sliced_ot(x + 0.5, x, 16, g).item() > 1e-3
    # one channel: projections are ±1, so a shift by c costs exactly c²
    y = torch.randn(1, 1, 40, generator=g)
    assert sliced_ot(y + 0.3, y, 5, g).item() == pytest.approx(0.09, rel=1e-4)
    # a style with each value twice (M = 2N) is the same distribution: resampled, it matches exactly
    doubled = y.repeat_interleave(2, dim=-1)
    assert sliced_ot(y, doubled, 5, g).item() < 1e-10
    assert sliced_ot(y[:, :, :20], doubled, 5, g).item() > 1e-3  # half of the samples: a different distribution
    assert sliced_ot(x.expand(3, 4, 50), x, 8, g).shape == (3,)


def test_gram_matrices():
    f = torch.tensor([[[1.0, 2.0], [0.0, 3.0]]])  # (1, C=2, N=2)
    assert torch.allclose(gram(f), torch.tensor([[[2.5, 3.0], [3.0, 4.5]]]))


# --- the loss ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sot", "gram"])
def test_loss_is_finite_per_sample_and_differentiable(style_png, kind):
    loss = seeded(style_loss(style_png, loss=kind), 0)
    assert StyleLoss.needs_target is False
    state = noise_state(batch=3).requires_grad_(True)
    value = loss(state)
    assert value.shape == (3,) and torch.isfinite(value).all() and (value > 0).all()
    assert loss.last["style"] == pytest.approx(float(value.detach().mean()), rel=1e-5)
    value.sum().backward()
    assert state.grad is not None and torch.isfinite(state.grad).all() and state.grad[:, :3].abs().sum() > 0
    assert state.grad[:, 4:].abs().sum() == 0  # hidden channels are invisible to the loss


@pytest.mark.parametrize("kind", ["sot", "gram"])
def test_the_style_image_scores_far_below_noise_and_grey(style_png, kind):
    loss = seeded(style_loss(style_png, loss=kind), 0)
    own = loss(style_state()).item()
    noise = loss(noise_state()).min().item()
    grey = loss(grey_state()).min().item()
    assert own < 1e-6 * min(noise, grey), (own, noise, grey)
    # position does not matter much: the texture shifted by half a period still scores well below noise and grey
    shifted = loss(torch.roll(style_state(), shifts=(2, 4), dims=(2, 3))).item()
    assert shifted < 0.5 * min(noise, grey), (shifted, noise, grey)


@pytest.mark.parametrize("kind", ["sot", "gram"])
def test_adam_steps_lower_the_loss(style_png, kind):
    loss = style_loss(style_png, loss=kind)
    logits = torch.zeros(1, 3, SIDE // 2, SIDE // 2)  # smaller than the style: sot resamples the style projections
    logits += 0.3 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(5))
    logits.requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=0.1)

    def evaluate() -> float:
        with torch.no_grad():
            return seeded(loss, 999)(as_state(torch.sigmoid(logits))).item()

    before = evaluate()
    history = []
    for step in range(12):
        value = seeded(loss, step)(as_state(torch.sigmoid(logits))).mean()
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        history.append(value.item())
    after = evaluate()
    assert after < 0.6 * before, (before, after, history)
    assert np.mean(history[-3:]) < 0.7 * np.mean(history[:3]), history


def test_generator_seeds_the_projections(style_png):
    loss = style_loss(style_png)
    state = noise_state(batch=1)
    a = seeded(loss, 7)(state)
    b = seeded(loss, 7)(state)
    c = seeded(loss, 8)(state)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # projections are drawn afresh at every call
    loss.generator = torch.Generator().manual_seed(7)
    first, second = loss(state), loss(state)
    assert torch.equal(first, a) and not torch.allclose(first, second)
    # without a generator: a private one seeded with config.seed, the same for every new loss
    fresh = [style_loss(style_png, seed=3)(state) for _ in range(2)]
    assert torch.equal(fresh[0], fresh[1])
    other = style_loss(style_png, seed=4)(state)
    assert not torch.allclose(fresh[0], other)


def test_style_projections_sets_the_number_of_projections(style_png, monkeypatch):
    counts: list[int] = []
    original = style_mod.sliced_ot

    def spy(features, style, projections, generator):
        counts.append(projections)
        return original(features, style, projections, generator)

    monkeypatch.setattr(style_mod, "sliced_ot", spy)
    state = noise_state()
    default = seeded(style_loss(style_png), 0)(state)
    assert counts == [64, 128, 256, 512, 512]  # as many as each layer has channels
    counts.clear()
    few = seeded(style_loss(style_png, projections=3), 0)(state)
    assert counts == [3] * 5
    assert not torch.allclose(default, few)
    with pytest.raises(UsageError, match="objectives.style.projections must be 0 or more"):
        style_loss(style_png, projections=-1)


def test_black_and_none_backgrounds_ignore_or_use_alpha(style_png):
    state = style_state()
    state[:, 3] = 0.0  # RGB kept, alpha gone: over white it is a washed-out picture, with "none" it is the texture
    white = seeded(style_loss(style_png, loss="gram"), 0)(state).item()
    none = seeded(style_loss(style_png, loss="gram", background="none"), 0)(state).item()
    assert none < 1e-6 * white


def test_small_grids_and_style_images_are_scaled_up(style_png):
    loss = seeded(style_loss(style_png, size=6), 0)
    assert loss.style_image.shape == (1, 3, 6, 6)
    value = loss(torch.rand(2, CHANNELS, 10, 7, generator=torch.Generator().manual_seed(0)))
    assert value.shape == (2,) and torch.isfinite(value).all()


def test_missing_style_image_is_one_line(tmp_path, style_png):
    missing = tmp_path / "nowhere" / "texture.png"
    with pytest.raises(NcaError) as info:
        style_loss(style_png, image=str(missing))
    assert str(missing) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UsageError, match="--style IMAGE"):
        style_loss(style_png, image="")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_moves_to_the_states_device(style_png):
    loss = style_loss(style_png, loss="gram")
    cpu = loss(noise_state())
    gpu = loss(noise_state().cuda())
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu, rtol=5e-2)  # cuDNN may use TF32
    assert torch.allclose(loss(noise_state()), cpu)  # and back
    sot = style_loss(style_png)
    sot.generator = torch.Generator(device="cuda").manual_seed(0)
    assert torch.isfinite(sot(noise_state().cuda())).all()
    sot.generator = None  # a private generator on the state's device
    assert sot(noise_state().cuda()).device.type == "cuda"


# --- VGG weights --------------------------------------------------------------------------------------------------


def _by_hand(model: torch.nn.Module, state_dict: dict, rgb: torch.Tensor) -> list[torch.Tensor]:
    """The style activations of torchvision's ``model`` after loading ``state_dict`` into it."""
    model.load_state_dict(state_dict)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x, out = (rgb - mean) / std, []
    with torch.no_grad():
        for index, layer in enumerate(model.features[: STYLE_LAYERS[-1] + 1]):
            x = layer(x)
            if index in STYLE_LAYERS:
                out.append(x)
    return out


def test_vgg_weights_file_round_trip(vgg_file, vgg_model, tmp_path):
    rgb = torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))
    state_dict = torch.load(vgg_file, weights_only=True)
    net = build_vgg(str(vgg_file))
    assert build_vgg(str(vgg_file)) is net  # cached in-process
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    with torch.no_grad():
        ours = net(rgb)
        random = build_vgg("random")(rgb)
    expected = _by_hand(vgg_model, state_dict, rgb)
    assert [tuple(f.shape[1:]) for f in ours] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]
    for a, b, r in zip(ours, expected, random, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
        assert not torch.allclose(a, r, atol=1e-3)  # really the file's weights, not the random backbone
    # just the features.* keys work too
    features_only = tmp_path / "features.pth"
    torch.save({k: v for k, v in state_dict.items() if k.startswith("features.")}, features_only)
    with torch.no_grad():
        for a, b in zip(build_vgg(str(features_only))(rgb), expected, strict=True):
            assert torch.allclose(a, b, atol=1e-5)


def test_random_vgg_is_the_same_every_time(monkeypatch):
    monkeypatch.setattr(style_mod, "_VGG_CACHE", {})
    first = build_vgg("random").features[0].weight.clone()
    monkeypatch.setattr(style_mod, "_VGG_CACHE", {})
    torch.manual_seed(999)
    assert torch.equal(build_vgg("random").features[0].weight, first)


def test_bad_vgg_weights_files_are_one_line(tmp_path, style_png):
    garbage = tmp_path / "bad.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(NcaError, match="bad.pth: not torchvision VGG16 weights") as info:
        build_vgg(str(garbage))
    assert "\n" not in str(info.value)
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(NcaError, match="wrong.pth: not torchvision VGG16 weights") as info:
        build_vgg(str(wrong))
    assert "\n" not in str(info.value)
    missing = tmp_path / "absent.pth"
    with pytest.raises(NcaError, match="absent.pth: VGG16 weights file not found") as info:
        style_loss(style_png, vgg_weights=str(missing))  # fails when the loss is made, before training
    assert "\n" not in str(info.value)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """An empty torchvision cache, no cached networks, and a network that fails the way an offline one does."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setattr(style_mod, "_VGG_CACHE", {})

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    try:
        yield tmp_path / "hub" / "checkpoints"
    finally:
        torch.hub.set_dir(previous)


def test_missing_vgg_weights_offline_say_what_and_where(empty_hub, style_png):
    start = time.monotonic()
    with pytest.raises(NcaError) as info:
        style_loss(style_png, vgg_weights="")
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "\n" not in message
    for needle in (
        "vgg16-397923af.pth",
        str(empty_hub),
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        "--vgg-weights FILE",
        "Name or service not known",
    ):
        assert needle in message, (needle, message)
    assert vgg_cache_path() == empty_hub / "vgg16-397923af.pth"
    assert not list(empty_hub.glob("*"))  # no partial download left behind


def test_cached_vgg_weights_load_without_network(empty_hub, vgg_model):
    empty_hub.mkdir(parents=True)
    features = {k: v for k, v in vgg_model.state_dict().items() if k.startswith("features.")}
    torch.save(features, empty_hub / "vgg16-397923af.pth")
    rgb = torch.rand(1, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        cached = build_vgg("")(rgb)
    for a, b in zip(cached, _by_hand(vgg_model, vgg_model.state_dict(), rgb), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_corrupt_cached_vgg_weights_are_one_line(empty_hub):
    empty_hub.mkdir(parents=True)
    (empty_hub / "vgg16-397923af.pth").write_bytes(b"\x00truncated download")
    with pytest.raises(NcaError) as info:
        build_vgg("")
    message = str(info.value)
    assert "\n" not in message and str(empty_hub / "vgg16-397923af.pth") in message
    assert "corrupt" in message and "--vgg-weights FILE" in message
    # a readable file that holds something else
    torch.save({"classifier.0.weight": torch.zeros(2)}, empty_hub / "vgg16-397923af.pth")
    with pytest.raises(NcaError, match="vgg16-397923af.pth: not torchvision VGG16 weights") as info:
        build_vgg("")
    assert "\n" not in str(info.value)


# --- textures scikit-image ships, and the real VGG16 ------------------------------------------------------------------


def test_a_texture_scikit_image_ships_is_read_by_name():
    from ncacli.losses.style import load_style_image

    rgb = load_style_image("skimage:grass", 32)
    assert rgb.shape == (1, 3, 32, 32) and 0.1 < float(rgb.mean()) < 0.9
    with pytest.raises(NcaError, match=r"^skimage:gras: not a picture scikit-image ships \(did you mean 'grass'\?\)$"):
        load_style_image("skimage:gras", 32)


def test_the_variable_names_the_vgg16_file(vgg_file, monkeypatch):
    monkeypatch.setenv("NCA_VGG16_WEIGHTS", str(vgg_file))
    rgb = torch.rand(1, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        named, given = build_vgg("")(rgb), build_vgg(str(vgg_file))(rgb)
    assert all(torch.equal(a, b) for a, b in zip(named, given, strict=True))
    monkeypatch.setenv("NCA_VGG16_WEIGHTS", str(vgg_file.parent / "gone.pth"))
    with pytest.raises(NcaError, match=r"gone.pth: VGG16 weights file not found \(\$NCA_VGG16_WEIGHTS\)"):
        build_vgg("")


def test_real_vgg16_tells_textures_apart():
    """With ImageNet weights the style distance orders pictures as a person would: the grass shifted and mirrored
    (the same texture) is far nearer the grass than gravel is, and gravel nearer than uniform noise (measured:
    0.08, 0.72, 6.6; random weights promise none of this)."""
    from conftest import real_weights
    from ncacli.losses.style import load_style_image

    weights = real_weights("vgg16")
    grass = load_style_image("skimage:grass", 128)
    shifted = torch.roll(grass, (37, 53), (2, 3)).flip(3)
    gravel = load_style_image("skimage:gravel", 128)
    noise = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    loss = StyleLoss(None, Config(), image="skimage:grass", vgg_weights=weights, size=128)
    distances = []
    for rgb in (grass, shifted, gravel, noise):
        with torch.no_grad():
            distances.append(float(seeded(loss, 0)(as_state(rgb)).mean()))
    assert distances[0] < 0.01 and 3 * distances[1] < distances[2] < distances[3], distances
