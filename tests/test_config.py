"""Config layers, presets, and their errors."""

from __future__ import annotations

import pytest

from ncacli.config import Config, list_presets, load_preset, resolve
from ncacli.errors import UsageError


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
        flags = {"prompt": "fire", "style": "leaves.jpg", "loss": "style+clip", "emojis": []}
        if load_preset(name)[0].get("task") == "latent":  # trains on its decoded picture's MSE alone
            with pytest.raises(UsageError, match="decoded picture's MSE"):
                resolve(name, flags=flags)
            flags = {"emojis": []}
        config = resolve(name, flags=flags)
        assert config.model_config().channels >= 4
        loss = load_preset(name)[0].get("loss", "mse").split("+")
        needed = {"prompt": "fire"} if "clip" in loss else {"style": "leaves.jpg"} if "style" in loss else {}
        assert resolve(name, flags=needed).loss.split("+") == loss
    assert resolve("regenerating").damage_count == 3 and resolve("growing").iters == 8000
    assert resolve("conditional").condition_channels == 3


def test_objective_keys_are_checked():
    with pytest.raises(UsageError, match="needs a prompt"):
        resolve("clip")
    with pytest.raises(UsageError, match="needs a style image"):
        resolve("texture")
    with pytest.raises(UsageError, match="prompt is read by the clip loss only"):
        resolve(flags={"prompt": "fire", "loss": "mse"})
    with pytest.raises(UsageError, match="loss_weights names 'clip'"):
        resolve(flags={"loss": "mse", "loss_weights": {"clip": 1.0}})
    with pytest.raises(UsageError, match="seed_kind must be one of"):
        resolve(sets=["seed_kind=random"])
    with pytest.raises(UsageError, match="signal_channels"):
        resolve(sets=["signal_channels=13"])
    config = resolve("clip", sets=["loss_weights={clip = 2.0}"], flags={"prompt": "fire"})
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


def test_config_round_trips_through_toml(tmp_path):
    import tomllib

    config = resolve("regenerating", None, ["seed_positions=[[0.25, 0.5]]", 'emoji="🦋"'])
    assert Config(**tomllib.loads(config.to_toml())) == config


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
