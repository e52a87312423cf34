"""Config layers, presets, and their errors."""

from __future__ import annotations

import warnings

import pytest

from conftest import preset_config
from ncacli.config import Config, MovedKey, apply, list_presets, load_preset, read_run_config, resolve
from ncacli.errors import UsageError
from ncacli.registry import TASKS


def test_precedence_defaults_preset_file_set_flags(tmp_path):
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text("iters = 30\nbatch = 5\nlr = 0.01\n")
    config = resolve("persistent", cfg_file, ["batch=6", "fire_rate=0.75"], {"batch": 7, "seed": None})
    assert config.mode == "persistent" and config.preset == "persistent"  # preset
    assert config.iters == 30 and config.lr == 0.01  # file over preset
    assert config.fire_rate == 0.75  # --set
    assert config.batch == 7  # flag over --set
    assert config.seed == Config().seed  # unset flag leaves the value alone


def test_every_shipped_preset_resolves():
    presets = list_presets()
    assert {"growing", "persistent", "regenerating", "clip", "clip-large", "texture", "conditional"} <= set(presets)
    for name in presets:
        flags = {"objectives": {"clip": {"prompt": "fire"}, "style": {"image": "leaves.jpg"}}, "loss": "style+clip"}
        flags["emojis"] = []
        own = preset_config(name)
        offered = getattr(TASKS.get(own.task_name(), "task"), "trains_with", None)
        if offered is not None and "style" not in offered:  # latent, translate: MSE and its kin alone
            with pytest.raises(UsageError, match="trains with mse|which is not in loss"):
                resolve(name, flags=flags)
            flags = {"emojis": []}
        config = resolve(name, flags=flags)
        assert config.model_config().channels >= 4
        loss = own.loss.split("+")
        inputs = {"clip": {"prompt": "fire"}, "style": {"image": "leaves.jpg"}}
        needed = {"objectives": {n: inputs[n] for n in loss if n in inputs}}
        assert resolve(name, flags=needed).loss.split("+") == loss
    assert resolve("regenerating").damage_count == 3 and resolve("growing").iters == 8000
    assert resolve("conditional").condition_channels == 3


def test_objective_keys_are_checked():
    with pytest.raises(UsageError, match=r"objective 'clip' needs the option prompt \(--prompt\)"):
        resolve("clip")
    with pytest.raises(UsageError, match=r"objective 'style' needs the option image \(--style\)"):
        resolve("texture")
    with pytest.raises(UsageError, match="objectives.clip.prompt is read by the clip objective only"):
        resolve(sets=["objectives.clip.prompt=fire", "loss=mse"])
    with pytest.raises(UsageError, match="the clip objective needs a prompt"):
        resolve("clip", sets=['objectives.clip.prompt=""'])
    with pytest.raises(UsageError, match="objectives.clip.augment must be one of crop, resize"):
        resolve("clip", sets=["objectives.clip.prompt=fire", "objectives.clip.augment=zoom"])
    with pytest.raises(UsageError, match=r"objective 'style' has no option 'sise' \(did you mean 'size'\?\)"):
        resolve("texture", sets=["objectives.style.image=a.png", "objectives.style.sise=3"])
    with pytest.raises(UsageError, match="objective 'style' option size must be an int, not 'big'"):
        resolve("texture", sets=["objectives.style.image=a.png", "objectives.style.size=big"])
    with pytest.raises(UsageError, match=r"unknown objective 'clp' \(did you mean 'clip'\?\)"):
        resolve(sets=["objectives.clp.prompt=fire"])
    with pytest.raises(UsageError, match="loss_weights names 'clip'"):
        resolve(flags={"loss": "mse", "loss_weights": {"clip": 1.0}})
    with pytest.raises(UsageError, match="seed_kind must be one of"):
        resolve(sets=["seed_kind=random"])
    with pytest.raises(UsageError, match="signal_channels"):
        resolve(sets=["signal_channels=13"])
    config = resolve("clip", sets=["loss_weights={clip = 2.0}"], flags={"objectives": {"clip": {"prompt": "fire"}}})
    assert config.loss_weights == {"clip": 2.0} and config.lr_schedule == "cosine"
    assert "loss_weights = {clip = 2.0}" in config.to_toml()


def test_preset_from_a_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('# mine\nmode = "persistent"\npool_size = 64\n')
    assert resolve(str(path)).pool_size == 64
    assert load_preset(str(path))[1] == "mine"


def test_unknown_key_suggests_the_right_one(tmp_path):
    with pytest.raises(UsageError, match="unknown config key 'fire_rat'.*did you mean 'fire_rate'"):
        resolve(None, None, ["fire_rat=0.5"])
    bad = tmp_path / "bad.toml"
    bad.write_text("itres = 3\n")
    with pytest.raises(UsageError, match=r"config .*bad.toml: unknown config key 'itres'.*'iters'"):
        resolve(None, bad)


def test_unknown_preset_and_bad_values():
    with pytest.raises(UsageError, match="unknown preset 'regenerate'.*did you mean 'regenerating'"):
        resolve("regenerate")
    with pytest.raises(UsageError, match="batch must be an int"):
        resolve(None, None, ["batch=big"])
    with pytest.raises(UsageError, match="fire_rate must be in"):
        resolve(None, None, ["fire_rate=0"])
    with pytest.raises(UsageError, match="mode must be one of"):
        resolve(None, None, ["mode=shrinking"])
    with pytest.raises(UsageError, match="damage_center must be one of middle, alive"):
        resolve("regenerating", None, ["damage_center=body"])
    for bad in ("[0.3, 0.2]", "[0, 0.2]", "[0.2]", "[0.1, 1.5]"):
        with pytest.raises(UsageError, match="damage_radius must be"):
            resolve("regenerating", None, [f"damage_radius={bad}"])
    for bad in ("[0.9]", "[1.0, 0.9]", "[0.5, -0.1]", '["a", 0.9]'):
        with pytest.raises(UsageError, match="adam_betas must be two numbers"):
            resolve(None, None, [f"adam_betas={bad}"])
    with pytest.raises(UsageError, match="grad_clip must be 0"):
        resolve(None, None, ["grad_clip=-1"])
    with pytest.raises(UsageError, match="lr_warmup must be 0 or more"):
        resolve(None, None, ["lr_warmup=-5"])


def test_config_round_trips_through_toml(tmp_path):
    import tomllib

    config = resolve("regenerating", None, ["seed_positions=[[0.25, 0.5]]", 'emoji="🦋"'])
    assert apply(Config(), tomllib.loads(config.to_toml()), "toml") == config
    assert config.to_toml().startswith("[model]\nchannels = 16\n") and "\n[training]\nmode = " in config.to_toml()
    texture = resolve("texture", sets=["objectives.style.image=grass.png", "task=texture"])
    assert apply(Config(), tomllib.loads(texture.to_toml()), "toml") == texture
    assert '[objectives.style]\nloss = "sot"\nsize = 128\nimage = "grass.png"\n' in texture.to_toml()


def test_a_preset_builds_on_another(tmp_path):
    combined = resolve("table1-combined")
    assert combined.preset == "table1-combined" and combined.perception == "combined"
    assert combined.emojis == resolve("table1").emojis and len(combined.emojis) == 5  # from its base
    assert combined.perception_options["keep_state"] is False
    looped = tmp_path / "looped.toml"
    looped.write_text(f'base = "{looped}"\nbatch = 4\n', encoding="utf-8")
    with pytest.raises(UsageError, match="base must name another preset, without a loop"):
        resolve(str(looped))


def test_the_review_table1_presets_have_its_sizes():
    """The NCAtorch review's Table 1 modules at its sizes (16 channels and 5 conditions, 80 features, an 80-wide
    update): Sobel 8k, Conv 3×3 23k, Conv 5×5 51k, Combined 71k; ours to the parameter."""
    from ncacli.engine import NCA

    counts = {name: NCA(resolve(name).model_config()).parameter_count() for name in
              ("table1", "table1-conv3", "table1-conv5", "table1-combined")}  # fmt: skip
    assert counts == {"table1": 8096, "table1-conv3": 22976, "table1-conv5": 49856, "table1-combined": 71456}
    review = {"table1": 8e3, "table1-conv3": 23e3, "table1-conv5": 51e3, "table1-combined": 71e3}
    assert all(abs(counts[n] - review[n]) / review[n] < 0.03 for n in counts)


def test_table1_learned_rows_train_with_the_review_s_optimiser():
    """The learned rows train as the review's repository trains its emoji (the Sobel row keeps Distill's recipe,
    with which it learns here); the wider rows inherit it from table1-conv3."""
    review = {
        "lr": 5e-4,
        "lr_schedule": "cosine",
        "lr_min": 0.0,
        "lr_warmup": 1000,
        "adam_betas": [0.5, 0.95],
        "grad_norm": False,
        "grad_clip": 1.0,
        "update_tanh": True,
        "steps_min": 38,
        "steps_max": 46,
    }
    for name in ("table1-conv3", "table1-conv5", "table1-combined"):
        config = resolve(name)
        assert {key: getattr(config, key) for key in review} == review, name
    sobel = resolve("table1")
    assert (sobel.lr, sobel.grad_norm, sobel.lr_warmup, sobel.steps_min) == (2e-3, True, 0, 64)
    assert not sobel.update_tanh
    assert resolve("table1-conv5").perception_options["kernel_size"] == 5


def test_sections_and_their_short_form():
    """A key of the model, target and training sections works in its section and without it; the task's and
    the objectives' options sit in their own sections; one mechanism names the section in its message."""
    config = resolve(sets=["model.channels=20", "training.lr=1e-3", "target.size=32", "hidden=64"])
    assert (config.channels, config.lr, config.size, config.hidden) == (20, 1e-3, 32, 64)
    assert resolve(sets=["lr=1"]).lr == 1.0 and isinstance(resolve(sets=["lr=1"]).lr, float)
    with pytest.raises(UsageError, match=r"\[training\] has no key 'channels'"):
        resolve(sets=["training.channels=20"])
    with pytest.raises(UsageError, match=r"\[training\] has no key 'lrr' \(did you mean 'lr'\?\)"):
        resolve(sets=["training.lrr=1"])
    with pytest.raises(UsageError, match=r"\[model\] option channels must be an int, not 'many'"):
        resolve(sets=["model.channels=many"])
    config = resolve(sets=["model.perception.name=conv", "model.perception.kernel_size=5"])
    assert config.perception == "conv" and config.perception_options == {"kernel_size": 5}
    config = resolve(flags={"task": {"name": "classify", "data": "digits"}})
    assert config.task == "classify" and config.task_options["data"] == "digits"
    with pytest.raises(UsageError, match=r"\[task\]: task 'classify' has no option 'dat' \(did you mean 'data'\?\)"):
        resolve(sets=["task=classify", "task.dat=digits"])


def test_keys_of_earlier_versions_work_with_one_line_each(tmp_path):
    """The flat keys of before (clip_model, style_size, task_options, loss_options, …) land at their new place,
    each with one line naming it; a run directory's flat config.toml of then reads back the same; keys an
    earlier version wrote as they were (every key of a run) say nothing."""
    with pytest.warns(MovedKey) as caught:
        config = resolve(sets=["clip_model=ViT-L-14", "prompt=fire", "loss=clip", "task_options={}"])
    assert config.objectives == {"clip": {"model": "ViT-L-14", "prompt": "fire"}}
    lines = [str(w.message) for w in caught]
    assert lines == [
        "--set clip_model=ViT-L-14: clip_model is now objectives.clip.model",
        "--set prompt=fire: prompt is now objectives.clip.prompt",
    ]
    with pytest.warns(MovedKey, match="style_size is now objectives.style.size"):
        config = resolve(sets=["style=a.png", "style_size=24", "loss=style"])
    assert config.objective("style").size == 24 and config.objective("style").image == "a.png"
    with pytest.warns(MovedKey, match=r"task_options is now \[task\]"):
        assert resolve(sets=["task=classify", "task_options={fresh = 1}"]).task_options == {"fresh": 1}
    run = tmp_path / "run"
    run.mkdir()
    flat = 'loss = "style"\nstyle = "a.png"\nprompt = ""\nclip_model = "ViT-B-32"\nstyle_loss = "gram"\nmodel = "nca"\n'
    (run / "config.toml").write_text(flat + "task_options = {}\nloss_options = {}\nlr = 0.01\n", encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = read_run_config(run)
    assert sorted(str(w.message).split(": ", 1)[1] for w in caught) == [
        "style is now objectives.style.image",
        "style_loss is now objectives.style.loss",
    ]
    assert config.objectives == {"style": {"image": "a.png", "loss": "gram"}} and config.lr == 0.01
    assert read_run_config(run, quiet=True) == config


def test_options_set_one_by_one_merge():
    """``--set perception_options.a=… --set perception_options.b=…`` (or ``architecture_options``) set both, as
    ``perception.a=…`` does, instead of the second replacing the first."""
    config = resolve("regenerating", sets=['perception="conv"', "perception_options.kernel_size=5",
                                           "perception_options.features=4"])  # fmt: skip
    assert config.perception_options == {"kernel_size": 5, "features": 4}
    config = resolve("regenerating", sets=['architecture="unet"', "architecture_options.width=3",
                                           "architecture.levels=3"])  # fmt: skip
    assert config.architecture == "unet" and config.architecture_options == {"width": 3, "levels": 3}
