"""The CLIP loss and the growth loss, on a tiny open_clip model with seeded random weights (no downloads)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ncacli.config import Config
from ncacli.errors import NcaError, UsageError
from ncacli.losses import clip as clipmod
from ncacli.losses import clip_model
from ncacli.losses.clip import ClipLoss, GrowthLoss, random_views
from ncacli.losses.clip_model import hub_reachable, load_clip
from tiny_clip import TINY_CFG, write_tiny_clip, write_tiny_clip_folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def config(tiny) -> Config:
    json_path, weights = tiny
    options = {"prompt": "fire", "model": str(json_path), "pretrained": str(weights), "augmentations": 4}
    return replace(Config(), loss="clip", objectives={"clip": options})


def clip_loss(config: Config, **options) -> ClipLoss:
    """The CLIP loss of ``config``'s ``[objectives.clip]``, with ``options`` changed."""
    return ClipLoss(None, config, **{**config.objectives["clip"], **options})


def _same_weights(model: torch.nn.Module, weights: Path) -> bool:
    saved = load_file(str(weights))
    current = model.state_dict()
    return set(saved) == set(current) and all(torch.equal(saved[k], current[k]) for k in saved)


def _state(batch: int = 2, size: int = 20, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 8, size, size, generator=g)


# ---------------------------------------------------------------------------------------------
# loading


def test_load_from_config_json_and_weights_file(tiny):
    json_path, weights = tiny
    clip = load_clip(str(json_path), str(weights))
    assert clip.name == "nca-tiny-clip"
    assert clip.image_size == (32, 32)
    assert clip.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert clip.std == pytest.approx((0.26862954, 0.26130258, 0.27577711))
    assert not clip.model.training
    assert not any(p.requires_grad for p in clip.model.parameters())
    assert _same_weights(clip.model, weights)  # the file's weights, not a random init
    assert load_clip(str(json_path), str(weights)) is clip  # cached in-process
    tokens = clip.tokenizer(["fire"])
    assert tokens.shape == (1, 77)


def test_load_from_folders_and_wrapped_config(tmp_path, tiny):
    json_path, weights = tiny
    folder = write_tiny_clip_folder(tmp_path / "with-config", seed=1)
    clip = load_clip("ViT-B-32", str(folder))  # the folder's config wins over the model name
    assert clip.name == f"local-dir:{folder}"
    assert clip.image_size == (32, 32)
    assert _same_weights(clip.model, folder / "open_clip_model.safetensors")
    assert load_clip(f"local-dir:{folder}", "openai").image_size == (32, 32)  # pretrained is ignored then

    bare = tmp_path / "weights-only"
    bare.mkdir()
    shutil.copy(weights, bare / "mine.pt.safetensors")
    assert _same_weights(load_clip(str(json_path), str(bare)).model, weights)

    wrapped = tmp_path / "nca-tiny-wrapped.json"
    wrapped.write_text(json.dumps({"model_cfg": TINY_CFG, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5]}}))
    clip = load_clip(str(wrapped), str(weights))
    assert clip.name == "nca-tiny-wrapped"
    assert clip.mean == pytest.approx((0.5, 0.5, 0.5))


def test_folder_with_several_weights_files_is_one_error(tmp_path, tiny):
    json_path, weights = tiny
    for name in ("a.safetensors", "b.pt"):
        shutil.copy(weights, tmp_path / name)
    with pytest.raises(NcaError) as err:
        load_clip(str(json_path), str(tmp_path))
    message = str(err.value)
    assert "\n" not in message and "a.safetensors" in message and "--clip-pretrained FILE" in message


def test_corrupt_weights_is_one_line_naming_the_file(tmp_path, tiny):
    json_path, weights = tiny
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00\x01 this is not a safetensors file")
    with pytest.raises(NcaError) as err:
        load_clip(str(json_path), str(bad))
    message = str(err.value)
    assert "\n" not in message and str(bad) in message and "nca-tiny-clip" in message
    # a failure is not cached: the repaired file loads
    shutil.copy(weights, bad)
    assert _same_weights(load_clip(str(json_path), str(bad)).model, weights)


def test_weights_of_another_architecture_is_one_line(tmp_path, tiny):
    json_path, weights = tiny
    other = dict(TINY_CFG, embed_dim=16)
    cfg = tmp_path / "nca-tiny-other.json"
    cfg.write_text(json.dumps(other))
    with pytest.raises(NcaError) as err:
        load_clip(str(cfg), str(weights))
    message = str(err.value)
    assert "\n" not in message and str(weights) in message and "size mismatch" in message


def test_bad_names_are_usage_errors(tiny):
    json_path, weights = tiny
    with pytest.raises(UsageError, match="clip_pretrained is empty: name a tag, a weights file or a folder"):
        load_clip(str(json_path), "")
    with pytest.raises(UsageError) as err:
        load_clip("ViT-B-33", str(weights))
    assert "ViT-B-32" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UsageError, match="not a tag of CLIP ViT-B-32.*openai"):
        load_clip("ViT-B-32", "no-such-tag")
    with pytest.raises(NcaError, match="file not found"):
        load_clip("ViT-B-32", "/nowhere/weights.safetensors")
    with pytest.raises(UsageError, match="missing embed_dim"):
        bad = json_path.with_name("nca-not-a-model.json")
        bad.write_text('{"vision_cfg": {}}')
        load_clip(str(bad), str(weights))


def test_missing_weights_offline_fail_fast(tmp_path, monkeypatch):
    import huggingface_hub.constants

    calls: list[str] = []
    monkeypatch.setattr(clip_model, "hub_reachable", lambda host, *a, **k: calls.append(host) or False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    start = time.monotonic()
    with pytest.raises(NcaError) as err:
        load_clip("ViT-B-32", "openai")
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert "\n" not in message
    for needle in ("ViT-B-32", "openai", "open_clip_pytorch_model.bin", "timm/vit_base_patch32_clip_224.openai"):
        assert needle in message, (needle, message)
    assert str(tmp_path) in message and "--clip-pretrained" in message and "unreachable" in message
    assert calls == ["huggingface.co"]
    assert ("ViT-B-32", "openai") not in clip_model._CACHE


def test_cached_weights_load_offline_without_network(tmp_path, tiny, monkeypatch):
    """A tag whose file is in the Hugging Face cache loads from there when the hub cannot be reached."""
    import huggingface_hub.constants
    import open_clip.pretrained

    json_path, weights = tiny
    load_clip(str(json_path), str(weights))  # registers nca-tiny-clip with open_clip
    monkeypatch.setitem(
        open_clip.pretrained._PRETRAINED,
        "nca-tiny-clip",
        {"cached": {"url": "", "hf_hub": "nca/tiny-clip/", "quick_gelu": True}},
    )
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--nca--tiny-clip"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(weights, repo / "snapshots" / commit / "open_clip_model.safetensors")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(clip_model, "hub_reachable", lambda host, *a, **k: False)
    offline_during_load: list[bool] = []
    create_model = open_clip.create_model

    def spy(*args, **kwargs):
        offline_during_load.append(huggingface_hub.constants.HF_HUB_OFFLINE)
        return create_model(*args, **kwargs)

    monkeypatch.setattr(open_clip, "create_model", spy)
    start = time.monotonic()
    clip = load_clip(str(json_path), "cached")
    assert offline_during_load == [True]  # served from the cache without asking the network
    assert time.monotonic() - start < 10
    assert _same_weights(clip.model, weights)
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # restored
    # the tag asks for QuickGELU (as OpenAI's weights do), and the model gets it
    activation = clip.model.visual.transformer.resblocks[0].mlp.gelu
    assert isinstance(activation, open_clip.transformer.QuickGELU)


def test_importing_the_module_does_not_import_open_clip():
    """``nca --help`` stays fast: open_clip and huggingface_hub are imported inside functions only."""
    import ast

    for module in (clipmod, clip_model):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
        assert names and not [n for n in names if n.split(".")[0] in ("open_clip", "huggingface_hub")], names


def test_hub_reachable_gives_up_quickly():
    start = time.monotonic()
    assert hub_reachable("huggingface.invalid") is False
    assert time.monotonic() - start < 5


# ---------------------------------------------------------------------------------------------
# the CLIP loss


def test_clip_loss_on_a_random_state(config):
    loss = clip_loss(config)
    assert ClipLoss.needs_target is False
    state = _state(3)
    value = loss(state)
    assert value.shape == (3,) and torch.isfinite(value).all()
    assert ((value >= 0) & (value <= 2)).all()
    assert loss.similarity is not None and torch.allclose(loss.similarity, 1 - value.detach())
    assert loss.last["clip_score"] == pytest.approx(-float((1 - value).mean()), abs=1e-6)
    # different pictures, different losses
    assert not torch.allclose(value[0], value[1])


def test_clip_loss_is_differentiable_in_the_visible_channels(config):
    loss = clip_loss(config)
    state = _state().requires_grad_(True)
    loss(state).sum().backward()
    assert state.grad is not None
    assert state.grad[:, :4].abs().sum() > 0  # RGB and alpha (white background) matter
    assert state.grad[:, 4:].abs().sum() == 0  # hidden channels do not


@pytest.mark.parametrize("augment", ["crop", "resize"])
def test_adam_on_the_state_lowers_the_loss(config, augment):
    loss = clip_loss(config, augment=augment)
    state = _state(1).requires_grad_(True)

    def evaluate() -> float:
        loss.generator = torch.Generator().manual_seed(123)  # the same views before and after
        with torch.no_grad():
            return float(loss(state)[0])

    before = evaluate()
    loss.generator = torch.Generator().manual_seed(0)
    optimiser = torch.optim.Adam([state], lr=0.1)
    for _ in range(8):
        optimiser.zero_grad()
        loss(state).sum().backward()
        optimiser.step()
    after = evaluate()
    assert after < before - 0.03, (before, after)


def test_same_generator_seed_same_loss(config):
    state = _state()
    a, b = clip_loss(config), clip_loss(config)
    a.generator = torch.Generator().manual_seed(7)
    b.generator = torch.Generator().manual_seed(7)
    first, second = a(state), b(state)
    assert torch.equal(first, second)
    assert not torch.equal(a(state), first)  # the generator moved on: new views
    b.generator = torch.Generator().manual_seed(8)
    c = clip_loss(config)
    c.generator = torch.Generator().manual_seed(8)
    assert torch.equal(b(state), c(state))
    # no generator: a private one seeded with config.seed
    assert torch.equal(clip_loss(config)(state), clip_loss(config)(state))
    assert not torch.equal(clip_loss(config)(state), clip_loss(replace(config, seed=5))(state))


def test_score_is_the_resize_similarity(config):
    state = _state()
    crop = clip_loss(config)
    resize = clip_loss(config, augment="resize")
    score = crop.score(state)
    assert score.shape == (2,) and not score.requires_grad
    assert torch.equal(score, crop.score(state))
    assert torch.allclose(score, 1 - resize(state).detach(), atol=1e-6)


def test_random_views_without_randomness_is_a_resize(monkeypatch):
    """With the crop the whole picture and no rotation or jitter, a view is the bilinear resize."""
    images = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(clipmod, "CROP_SCALE", (1.0, 1.0))
    monkeypatch.setattr(clipmod, "CROP_RATIO", (1.0, 1.0))
    monkeypatch.setattr(clipmod, "ROTATION_DEGREES", 0.0)
    monkeypatch.setattr(clipmod, "JITTER", 0.0)
    views = random_views(images, 3, (32, 32), torch.Generator().manual_seed(0))
    resized = torch.nn.functional.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    assert views.shape == (6, 3, 32, 32)
    assert torch.allclose(views, resized.repeat_interleave(3, dim=0), atol=1e-5)


def test_random_views_differ_and_stay_in_range():
    images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)
    views = random_views(images, 4, (32, 32), torch.Generator().manual_seed(0))
    assert views.shape == (4, 3, 32, 32)
    assert views.min() >= 0 and views.max() <= 1
    assert not torch.allclose(views[0], views[1])
    views.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# the growth loss


def _alive(values: list[float], size: int = 8) -> torch.Tensor:
    """States whose alpha is uniformly ``values[b]``, RGB black."""
    state = torch.zeros(len(values), 8, size, size)
    for b, v in enumerate(values):
        state[b, 3] = v
    return state


def test_growth_proportional(config):
    clip = clip_loss(config)
    growth = GrowthLoss(clip, config.background)
    state = _alive([1.0, 0.0, 0.25])
    clip(state)
    clip.similarity = torch.tensor([0.3, 0.3, 0.3])
    value = growth(state)
    assert torch.allclose(value, torch.tensor([0.0, 0.3, 0.225]))
    assert value[0] < value[1]  # fully alive beats empty when CLIP likes the picture
    assert growth.last["alive"] == pytest.approx(1.25 / 3)
    clip.similarity = torch.tensor([-0.2, -0.2, -0.2])
    assert torch.equal(growth(state), torch.zeros(3))  # no reward for growing what CLIP dislikes
    # the gradient asks for more alive cells
    state = _alive([0.5]).requires_grad_(True)
    clip(state)
    clip.similarity = torch.tensor([0.4])
    growth(state).sum().backward()
    assert (state.grad[:, 3] < 0).all()


def test_growth_constant_floor(config):
    growth = GrowthLoss(clip_loss(config, growth_loss="constant", growth_floor=0.5), config.background)
    value = growth(_alive([0.75, 0.5, 0.25, 0.0]))
    assert torch.allclose(value, torch.tensor([0.0, 0.0, 0.25, 0.5]))


def test_growth_gated_by_a_blank_picture(config):
    clip = clip_loss(config, growth_loss="gated")
    growth = GrowthLoss(clip, config.background)
    blank = torch.zeros(1, 8, 10, 10)  # dead cells: white on the white background
    assert growth.baseline == pytest.approx(float(clip.score(blank)[0]), abs=1e-5)
    black = GrowthLoss(clip, "black")
    assert black.baseline != pytest.approx(growth.baseline)
    state = _alive([0.25, 0.25])
    clip(state)
    clip.similarity = torch.tensor([growth.baseline + 0.01, growth.baseline - 0.01])
    assert torch.allclose(growth(state), torch.tensor([0.75, 0.0]))


def test_growth_none_and_batch_mismatch(config):
    clip = clip_loss(config)
    none = GrowthLoss(clip_loss(config, growth_loss="none"), config.background)
    assert torch.equal(none(_alive([0.0, 1.0])), torch.zeros(2))
    growth = GrowthLoss(clip, config.background)
    with pytest.raises(RuntimeError, match="CLIP loss last saw no batch"):
        growth(_alive([0.5]))
    clip(_alive([0.5, 0.5, 0.5]))
    with pytest.raises(RuntimeError, match="batch of 2 states.*batch of 3"):
        growth(_alive([0.5, 0.5]))
