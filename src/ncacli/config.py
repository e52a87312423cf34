"""The typed run configuration, presets, and overrides.

Precedence: built-in defaults < preset TOML < ``--config FILE`` < ``--set key=value`` < explicit flags.
Keys are flat, but for the options of a plugin entry: ``perception`` takes a name or a table
(``[perception] name = "conv"`` ``kernel_size = 5``; ``--set perception.kernel_size=5``), and so does ``update``;
``[loss_options.NAME]`` holds an objective's options and ``[task_options]`` the task's. Every option is checked
against what its entry declares. An unknown key is an error with a "did you mean".
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ncacli.engine.nca import ModelConfig
from ncacli.errors import UsageError, did_you_mean
from ncacli.names import (  # noqa: F401  (GROWTH_LOSSES is read from here by the clip loss)
    BACKGROUNDS,
    CLIP_AUGMENTS,
    DAMAGE_CENTERS,
    GROWTH_LOSSES,
    LR_SCHEDULES,
    MODES,
    PADDING_MODES,
    SEED_KINDS,
    STYLE_LOSSES,
)

DEFAULT_TASK = "image"  # what a config trains that names no task and no objective that implies one

# keys of 0.1.0 run directories that are now spelled otherwise (read by --resume): old → new value
LEGACY_KEYS = {"model": lambda v: {"task": "pixels"} if v == "pixels" else {}}


@dataclass(frozen=True)
class Config(ModelConfig):
    """Model keys (inherited from :class:`ModelConfig`), then target, seed and training keys."""

    # target and seed
    emoji: str = "🦎"
    target: str = ""
    # a conditional model (the NCAtorch review): one class per target, the files first, then the emoji
    targets: list = field(default_factory=list)
    emojis: list = field(default_factory=list)
    size: int = 40
    padding: int = 16
    seed_positions: list = field(default_factory=list)  # [] = auto (see engine.seeds)
    seed_kind: str = "distill"  # distill (alpha and hidden = 1), random_color (random RGB, alpha 1), zeros
    background: str = "white"  # what dead cells look like to a loss and in pictures: white, black, none (RGB only)
    # objectives without a target image (CLIP, style): the grid is size + 2·padding square
    prompt: str = ""
    style: str = ""
    loss_weights: dict = field(default_factory=dict)  # {"style": 1.0, "clip": 0.5}; missing names weigh 1
    loss_options: dict = field(default_factory=dict)  # {"myloss": {"k": 1}}: an objective's own options
    clip_model: str = "ViT-B-32"  # an open_clip name, "local-dir:PATH", or a model config JSON file
    clip_pretrained: str = "openai"  # an open_clip tag, a weights file, or a folder
    clip_augmentations: int = 8
    clip_augment: str = "crop"  # crop (random resized crop, rotation, colour jitter) or resize
    growth_loss: str = "proportional"  # proportional, constant, gated, none (only with clip)
    growth_weight: float = 1.0
    growth_floor: float = 0.5  # alive fraction the constant growth loss asks for
    tv_weight: float = 0.0
    overflow_weight: float = 0.0
    style_loss: str = "sot"  # sot (sliced optimal transport) or gram
    style_size: int = 128  # the style image is fitted into this many pixels
    style_projections: int = 0  # sliced-OT projections per layer; 0 = as many as the layer has channels
    vgg_weights: str = ""  # "" = torchvision's cache, a file, or "random" (tests only)
    # the task (ncacli.tasks): "" = from the objective (text for clip, texture for style, else image)
    task: str = ""
    task_options: dict = field(default_factory=dict)
    # training
    mode: str = "growing"
    loss: str = "mse"
    iters: int = 8000
    batch: int = 8
    steps_min: int = 64
    steps_max: int = 96
    lr: float = 2e-3
    lr_schedule: str = "step"  # step (×lr_gamma at each milestone) or cosine (lr → lr_min over iters)
    lr_milestones: list = field(default_factory=lambda: [2000])
    lr_gamma: float = 0.1
    lr_min: float = 1e-4
    grad_norm: bool = True
    truncate_backprop: int = 0  # gradients through the last K steps only (0 = all), the higher-resolution NCA study
    checkpoint_steps: int = 0  # gradient checkpointing: keep the state every N steps, recompute between (0 = off)
    pool_size: int = 1024
    damage_count: int = 3
    damage_radius: list = field(default_factory=lambda: [0.05, 0.2])
    damage_center: str = "middle"
    mutation_count: int = 0  # conditional runs with a pool: samples per batch switched to another class
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "auto"
    preset: str = ""

    def classes(self) -> list[tuple[str, str]]:
        """A conditional run's classes, in order: ``("target", path)`` or ``("emoji", emoji)``; [] for one target."""
        return [("target", t) for t in self.targets] + [("emoji", e) for e in self.emojis]

    def task_name(self) -> str:
        """The task: as named, else the one the objective implies (:func:`implied_task`)."""
        return self.task or implied_task(self.loss)

    def model_config(self) -> ModelConfig:
        names = {f.name for f in fields(ModelConfig)}
        return ModelConfig(**{k: v for k, v in asdict(self).items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_toml(self) -> str:
        return "".join(f"{k} = {_toml_value(v)}\n" for k, v in self.to_dict().items())


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else _toml_value(key)


FIELD_TYPES = {f.name: f.type for f in fields(Config)}


def _coerce(key: str, value: Any, origin: str) -> Any:
    kind = FIELD_TYPES[key]
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "list": isinstance(value, list),
        "dict": isinstance(value, dict),
    }[kind]
    if not ok:
        raise UsageError(f"{origin}: {key} must be {'an' if kind == 'int' else 'a'} {kind}, not {value!r}")
    return float(value) if kind == "float" else value


def check_keys(data: dict[str, Any], origin: str) -> None:
    for key in data:
        if key not in FIELD_TYPES:
            raise UsageError(f"{origin}: unknown config key '{key}'{did_you_mean(key, FIELD_TYPES)}")


ENTRY_TABLES = {"perception": "perception_options", "update": "update_options"}


def _entry_tables(config: Config, data: dict[str, Any]) -> dict[str, Any]:
    """``perception = {name = "conv", kernel_size = 5}`` (or ``update``) → the name and its options; a table
    without ``name`` sets options of the perception already chosen (merged with those set before)."""
    out = dict(data)
    for key, options_key in ENTRY_TABLES.items():
        value = out.get(key)
        if isinstance(value, dict):
            table = dict(value)
            name = table.pop("name", None)
            same = name is None or name == getattr(config, key)
            base = dict(getattr(config, options_key)) if same else {}
            out[options_key] = {**base, **table, **out.get(options_key, {})}
            if name is None:
                del out[key]
            else:
                out[key] = name
        elif isinstance(value, str) and value != getattr(config, key) and options_key not in out:
            out[options_key] = {}  # another perception: the options of the last one do not carry over
    return out


def apply(config: Config, data: dict[str, Any], origin: str) -> Config:
    """Return ``config`` with ``data`` applied, after checking keys and types."""
    data = _entry_tables(config, data)
    check_keys(data, origin)
    merged = {}
    for key, value in data.items():
        value = _coerce(key, value, origin)
        if key in ("loss_options", "task_options") and isinstance(value, dict):
            current = getattr(config, key)
            if key == "loss_options":
                value = {**current, **{n: {**current.get(n, {}), **o} for n, o in value.items()}}
            else:
                value = {**current, **value}
        merged[key] = value
    return replace(config, **merged)


def parse_set(item: str) -> tuple[str, Any]:
    """``key=value`` → ``(key, value)``; the value is read as TOML, else taken as a string."""
    if "=" not in item:
        raise UsageError(f"--set {item!r}: expected key=value")
    key, raw = (s.strip() for s in item.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if "." in key:  # perception.kernel_size=5 → perception = {kernel_size = 5}
        head, *rest = key.split(".")
        for part in reversed(rest):
            value = {part: value}
        return head, value
    return key, value


def read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{what} {path}: file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what} {path}: not valid TOML ({exc})") from None


def preset_dirs() -> list[Path]:
    """Shipped presets live in ``ncacli/presets`` in a wheel and ``presets/`` in a checkout."""
    here = Path(__file__).resolve().parent
    return [d for d in (here / "presets", here.parents[1] / "presets") if d.is_dir()]


def list_presets() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in preset_dirs():
        for p in sorted(d.glob("*.toml")):
            found.setdefault(p.stem, p)
    return found


def preset_summary(path: Path) -> str:
    """The preset's first comment line."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def load_preset(name: str) -> tuple[dict[str, Any], str]:
    """A preset by name or path → ``(values, name)``."""
    path = Path(name)
    if name.endswith(".toml") or path.is_file():
        return read_toml(path, "preset"), path.stem
    presets = list_presets()
    if name not in presets:
        raise UsageError(f"unknown preset '{name}'{did_you_mean(name, presets)}; `nca presets` lists them")
    return read_toml(presets[name], f"preset {name}"), name


def preset_layers(preset: str, below: tuple[str, ...] = ()) -> list[tuple[dict[str, Any], str]]:
    """A preset and the presets it builds on (``base = "NAME"``), the deepest first: ``[(values, name), …]``."""
    values, name = load_preset(preset)
    base = values.pop("base", None)
    if base is None:
        return [(values, name)]
    if not isinstance(base, str) or name in below:
        raise UsageError(f"preset {name}: base must name another preset, without a loop (got {base!r})")
    return [*preset_layers(base, (*below, name)), (values, name)]


def resolve(
    preset: str | None = None,
    config_file: Path | None = None,
    sets: list[str] | None = None,
    flags: dict[str, Any] | None = None,
) -> Config:
    """Build the config from its layers, in order of precedence."""
    config = Config()
    if preset:
        for values, name in preset_layers(preset):
            config = apply(config, values, f"preset {name}")
        config = replace(config, preset=name)
    if config_file is not None:
        config = apply(config, read_toml(config_file, "config"), f"config {config_file}")
    for item in sets or []:
        key, value = parse_set(item)
        config = apply(config, {key: value}, f"--set {item}")
    config = apply(config, {k: v for k, v in (flags or {}).items() if v is not None}, "option")
    n = len(config.classes())
    if n >= 2 and config.condition_channels == 0:  # several targets make a conditional model
        config = replace(config, condition_channels=n)
    validate(config)
    return config


def loss_names(loss: str) -> list[str]:
    """``"style+clip"`` → ``["style", "clip"]``."""
    names = [n.strip() for n in loss.split("+")]
    if not all(names):
        raise UsageError(f"loss {loss!r}: expected names joined by '+', like style+clip")
    return names


def validate(config: Config) -> None:
    if config.mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, not {config.mode!r}")
    if config.padding_mode not in PADDING_MODES:
        raise UsageError(f"padding_mode must be 'zeros' or 'circular', not {config.padding_mode!r}")
    if not 0.0 < config.fire_rate <= 1.0:
        raise UsageError(f"fire_rate must be in (0, 1], not {config.fire_rate}")
    if config.channels < 4:
        raise UsageError(f"channels must be at least 4 (RGBA), not {config.channels}")
    for key in ("iters", "batch", "steps_min", "hidden", "depth", "size", "pool_size", "checkpoint_every"):
        if getattr(config, key) < 1:
            raise UsageError(f"{key} must be at least 1, not {getattr(config, key)}")
    for key, allowed in (
        ("seed_kind", SEED_KINDS),
        ("background", BACKGROUNDS),
        ("lr_schedule", LR_SCHEDULES),
        ("growth_loss", GROWTH_LOSSES),
        ("style_loss", STYLE_LOSSES),
        ("clip_augment", CLIP_AUGMENTS),
    ):
        if getattr(config, key) not in allowed:
            raise UsageError(f"{key} must be one of {', '.join(allowed)}, not {getattr(config, key)!r}")
    for key in ("signal_channels", "signal_steps", "truncate_backprop", "checkpoint_steps", "mutation_count"):
        if getattr(config, key) < 0:
            raise UsageError(f"{key} must be 0 or more, not {getattr(config, key)}")
    if config.condition_channels < 0:
        raise UsageError(f"condition_channels must be 0 or more, not {config.condition_channels}")
    if config.signal_channels > config.channels - 4:
        raise UsageError(
            f"signal_channels ({config.signal_channels}) exceeds the {config.channels - 4} hidden channels"
        )
    names = loss_names(config.loss)
    if "clip" in names and not config.prompt:
        raise UsageError("the clip loss needs a prompt: --prompt TEXT")
    if "style" in names and not config.style:
        raise UsageError("the style loss needs a style image: --style IMAGE")
    if config.prompt and "clip" not in names:
        raise UsageError(f"a prompt is read by the clip loss only, and loss is {config.loss!r}: add --loss clip")
    if config.style and "style" not in names:
        raise UsageError(f"a style image is read by the style loss only, and loss is {config.loss!r}: add --loss style")
    for name, weight in config.loss_weights.items():
        if name not in names:
            raise UsageError(f"loss_weights names '{name}', which is not in loss {config.loss!r}")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            raise UsageError(f"loss_weights: the weight of {name} must be a number, not {weight!r}")
    if config.clip_augmentations < 1:
        raise UsageError(f"clip_augmentations must be at least 1, not {config.clip_augmentations}")
    if config.steps_max < config.steps_min:
        raise UsageError(f"steps_max ({config.steps_max}) is below steps_min ({config.steps_min})")
    if config.mode != "growing" and config.pool_size < config.batch:
        raise UsageError(f"pool_size ({config.pool_size}) is smaller than batch ({config.batch})")
    if config.damage_count >= config.batch and config.mode == "regenerating":
        raise UsageError(f"damage_count ({config.damage_count}) must be below batch ({config.batch})")
    _validate_damage(config)
    if config.task_name() != "classify":
        _validate_classes(config)
    check_entries(config)


def _validate_damage(config: Config) -> None:
    r = config.damage_radius
    if not (
        isinstance(r, list)
        and len(r) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r)
        and 0 < r[0] <= r[1] <= 1
    ):
        raise UsageError(
            f"damage_radius must be [low, high] with 0 < low ≤ high ≤ 1 (fractions of the width), not {r!r}"
        )
    if config.damage_center not in DAMAGE_CENTERS:
        raise UsageError(f"damage_center must be one of {', '.join(DAMAGE_CENTERS)}, not {config.damage_center!r}")


def implied_task(loss: str) -> str:
    """The task a config that names none trains: the first, in the registry's order, that says it is implied
    by one of the objectives in ``loss`` (``Task.implied_by``), else :data:`DEFAULT_TASK`."""
    from ncacli.registry import TASKS

    names = set(loss_names(loss))
    return next((name for name in TASKS if names & set(getattr(TASKS[name], "implied_by", ()))), DEFAULT_TASK)


def check_entries(config: Config, origin: str = "config") -> None:
    """Every named entry is installed and its options are the ones it declares."""
    from ncacli.registry import OBJECTIVES, PERCEPTIONS, TASKS, UPDATES

    PERCEPTIONS.get(config.perception, "perception")
    PERCEPTIONS.options(config.perception, config.perception_options, f"{origin}: perception")
    UPDATES.get(config.update, "update")
    UPDATES.options(config.update, config.update_options, f"{origin}: update")
    names = loss_names(config.loss)
    for name in names:
        OBJECTIVES.get(name, "loss")
    for name, options in config.loss_options.items():
        if name not in names:
            raise UsageError(f"loss_options names '{name}', which is not in loss {config.loss!r}")
        if not isinstance(options, dict):
            raise UsageError(f"loss_options.{name} must be a table of options, not {options!r}")
        OBJECTIVES.options(name, options, f"{origin}: loss_options")
    task = TASKS.get(config.task_name(), "task")
    TASKS.options(config.task_name(), config.task_options, f"{origin}: task_options")
    task.check_config(config)


def _validate_classes(config: Config) -> None:
    """Several targets ↔ condition channels, and the options only a conditional run reads."""
    n = len(config.classes())
    if n == 1:
        raise UsageError("targets/emojis name one target; a conditional model needs two or more (or use target/emoji)")
    for key in ("targets", "emojis"):
        if not all(isinstance(v, str) and v for v in getattr(config, key)):
            raise UsageError(f"{key} must be a list of non-empty strings, not {getattr(config, key)!r}")
    if n and config.condition_channels != n:
        raise UsageError(f"condition_channels is {config.condition_channels} but {n} targets are named: one per class")
    if not n and config.condition_channels:
        raise UsageError(
            f"condition_channels = {config.condition_channels} needs as many targets: --emoji A --emoji B ... "
            "or --target a.png --target b.png ..."
        )
    if n and not needs_image(config):
        raise UsageError(f"several targets are compared by the mse loss; loss is {config.loss!r}")
    damaged = config.damage_count if config.mode == "regenerating" else 0
    if n and config.mode != "growing" and damaged + config.mutation_count >= config.batch:
        raise UsageError(
            f"damage_count + mutation_count ({damaged + config.mutation_count}) must be below batch "
            f"({config.batch}): one sample of each batch is a fresh seed"
        )


def needs_image(config: Config) -> bool:
    """Whether the loss is a plain comparison with a target image (what a conditional run trains with)."""
    return all(name == "mse" for name in loss_names(config.loss))
