"""The typed run configuration, presets, and overrides.

Precedence: built-in defaults < preset TOML < ``--config FILE`` < ``--set key=value`` < explicit flags.

The configuration has sections, each owned by the component that reads it and checked by one mechanism
(:mod:`ncacli.options`): ``[model]`` (:class:`~ncacli.engine.nca.ModelConfig`, what a model file keeps),
``[target]`` (:class:`TargetConfig`: what grows, from which seed), ``[training]`` (:class:`TrainingConfig`),
``[task]`` (``name`` and the task's own ``Options``) and ``[objectives.NAME]`` (each objective's own
``Options``: ``[objectives.clip] prompt = "…"``). A key of the model, target and training sections may also be
written without its section (``lr = 1e-3``, ``--set lr=1e-3``): their names do not repeat. ``perception`` and
``update`` take a name or a table with ``name`` and that entry's options (``--set perception.kernel_size=5``).
A key that moved (``clip_model``, ``task_options``, …) still works and gets one line naming its new place; an
unknown key is an error with a "did you mean".
"""

from __future__ import annotations

import tomllib
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ncacli.engine.nca import ModelConfig
from ncacli.errors import UsageError, did_you_mean
from ncacli.names import BACKGROUNDS, DAMAGE_CENTERS, LR_SCHEDULES, MODES, PADDING_MODES, SEED_KINDS
from ncacli.options import check_options, dataclass_fields, option_fields

DEFAULT_TASK = "image"  # what a config trains that names no task and no objective that implies one


class MovedKey(UserWarning):
    """A configuration key of an earlier version, read at its new place."""


@dataclass(frozen=True)
class TargetConfig:
    """The ``[target]`` section: what grows, at what size, from which seed."""

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


@dataclass(frozen=True)
class TrainingConfig:
    """The ``[training]`` section: the objective's terms and weights, the schedule, the pool and damage."""

    mode: str = "growing"
    loss: str = "mse"
    loss_weights: dict = field(default_factory=dict)  # {"style": 1.0, "clip": 0.5}; missing names weigh 1
    tv_weight: float = 0.0
    overflow_weight: float = 0.0
    iters: int = 8000
    batch: int = 8
    steps_min: int = 64
    steps_max: int = 96
    lr: float = 2e-3
    lr_schedule: str = "step"  # step (×lr_gamma at each milestone) or cosine (lr → lr_min over iters)
    lr_milestones: list = field(default_factory=lambda: [2000])
    lr_gamma: float = 0.1
    lr_min: float = 1e-4
    lr_warmup: int = 0  # iterations over which the rate rises linearly to its schedule's (0: none)
    adam_betas: list = field(default_factory=lambda: [0.9, 0.999])  # Adam's (β1, β2)
    grad_norm: bool = True
    grad_clip: float = 0.0  # clip the gradient's global norm to this after grad_norm (0: no clipping)
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


# the sections whose keys are the configuration's own, in the order a run's config.toml writes them
SECTIONS: dict[str, type] = {"model": ModelConfig, "target": TargetConfig, "training": TrainingConfig}


@dataclass(frozen=True)
class Config(TrainingConfig, TargetConfig, ModelConfig):
    """The whole configuration: the keys of the model, target and training sections, then the task's and the
    objectives' own options (checked against what each declares, through the registry)."""

    # the task (ncacli.tasks): "" = the one the objective implies (text for clip, texture for style, else image)
    task: str = ""
    task_options: dict = field(default_factory=dict)  # the [task] section but its name: the task's Options
    objectives: dict = field(default_factory=dict)  # name → the [objectives.NAME] section: that objective's Options

    def classes(self) -> list[tuple[str, str]]:
        """A conditional run's classes, in order: ``("target", path)`` or ``("emoji", emoji)``; [] for one target."""
        return [("target", t) for t in self.targets] + [("emoji", e) for e in self.emojis]

    def task_name(self) -> str:
        """The task: as named, else the one the objective implies (:func:`implied_task`)."""
        return self.task or implied_task(self.loss)

    def objective(self, name: str) -> Any:
        """The options of objective ``name`` as it reads them: its ``Options``, defaults filled in (None for an
        objective that declares none)."""
        from ncacli.registry import OBJECTIVES

        cls = getattr(OBJECTIVES.get(name, "loss"), "Options", None)
        return None if cls is None else cls(**self.objectives.get(name, {}))

    def model_config(self) -> ModelConfig:
        names = {f.name for f in fields(ModelConfig)}
        return ModelConfig(**{k: v for k, v in asdict(self).items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_toml(self) -> str:
        """The configuration in sections: what a run directory's ``config.toml`` holds."""
        values = self.to_dict()
        out = []
        for name, cls in SECTIONS.items():
            out.append(f"[{name}]\n" + "".join(f"{f.name} = {_toml_value(values[f.name])}\n" for f in fields(cls)))
        task = {"name": self.task, **self.task_options} if self.task else dict(self.task_options)
        if task:
            out.append("[task]\n" + "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in task.items()))
        for name, options in self.objectives.items():
            body = "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in options.items())
            out.append(f"[objectives.{_toml_key(name)}]\n{body}")
        return "\n".join(out)


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


SECTION_OF = {f.name: section for section, cls in SECTIONS.items() for f in fields(cls)}  # key → its section
SECTION_FIELDS = {section: dataclass_fields(cls) for section, cls in SECTIONS.items()}
TABLES = ("task", "objectives")  # the sections the task and the objectives own


def moved_keys() -> dict[str, tuple[str, Any]]:
    """Top-level keys of earlier versions that an objective now owns (its ``moved_keys``): old → (objective,
    the option's field)."""
    from ncacli.registry import OBJECTIVES

    out = {}
    for name in OBJECTIVES:
        known = {f.name: f for f in option_fields(OBJECTIVES[name], OBJECTIVES.option_skip)}
        out.update({old: (name, known[new]) for old, new in getattr(OBJECTIVES[name], "moved_keys", {}).items()})
    return out


def _moved(origin: str, old: str, new: str) -> None:
    warnings.warn(f"{origin}: {old} is now {new}", MovedKey, stacklevel=4)


def _table(value: Any, origin: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{origin}: {key} must be a table, not {value!r}")
    return value


def _flatten(data: dict[str, Any], origin: str) -> dict[str, Any]:
    """Sections and the keys of earlier versions → the fields of :class:`Config`."""
    out: dict[str, Any] = {}
    task_options: dict[str, Any] = {}
    objectives: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            for k, v in value.items():
                if SECTION_OF.get(k) != key:
                    known = [f.name for f in SECTION_FIELDS[key]]
                    raise UsageError(f"{origin}: [{key}] has no key '{k}'{did_you_mean(k, known)}")
                out[k] = v
        elif key == "model" and isinstance(value, str):  # 0.1.0's model = "pixels" (or "nca"): a task's old name
            from ncacli.registry import TASKS

            named = [name for name in TASKS if value in getattr(TASKS[name], "spelled_model", ())]
            if named:
                _moved(origin, f'model = "{value}"', f'task = "{named[0]}"')
                out["task"] = named[0]
        elif key == "task" and isinstance(value, dict):
            table = dict(value)
            if "name" in table:
                out["task"] = table.pop("name")
            task_options.update(table)
        elif key == "task_options":
            if value:
                _moved(origin, key, "[task]")
            task_options.update(_table(value, origin, key))
        elif key in ("objectives", "loss_options"):
            if key == "loss_options" and value:
                _moved(origin, key, "[objectives]")
            for name, options in _table(value, origin, key).items():
                objectives.setdefault(name, {}).update(_table(options, origin, f"{key}.{name}"))
        elif key in SECTION_OF or key == "task":
            out[key] = value
        else:
            moved = moved_keys()
            if key not in moved:
                known = [*SECTION_OF, *SECTIONS, *TABLES]
                raise UsageError(f"{origin}: unknown config key '{key}'{did_you_mean(key, known)}")
            name, option = moved[key]
            if value == option.default or (option.required and value == ""):
                continue  # earlier versions wrote every key to a run's config.toml: one left as it was says nothing
            _moved(origin, key, f"objectives.{name}.{option.name}")
            objectives.setdefault(name, {})[option.name] = value
    if task_options:
        out["task_options"] = task_options
    if objectives:
        out["objectives"] = objectives
    return out


ENTRY_TABLES = {"perception": "perception_options", "update": "update_options",
                "architecture": "architecture_options"}  # fmt: skip


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
    """Return ``config`` with ``data`` (sections, or keys of the model, target and training sections at the top
    level) applied, after checking keys and types; the task's and the objectives' options merge with those
    set before."""
    data = _entry_tables(config, _flatten(data, origin))
    for section, known in SECTION_FIELDS.items():
        part = {key: value for key, value in data.items() if SECTION_OF.get(key) == section}
        data.update(check_options(known, part, origin, f"[{section}]", required=False, floats=True))
    if not isinstance(data.get("task", ""), str):
        raise UsageError(f"{origin}: task must be a name or a table with name, not {data['task']!r}")
    if "task_options" in data:
        data["task_options"] = {**config.task_options, **data["task_options"]}
    if "objectives" in data:
        current = config.objectives
        data["objectives"] = {**current, **{n: {**current.get(n, {}), **o} for n, o in data["objectives"].items()}}
    return replace(config, **data)


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
        # perception_options.kernel_size=5: the same table, merged with the options set before (not replacing them)
        head = {options: entry for entry, options in ENTRY_TABLES.items()}.get(head, head)
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


def read_run_config(directory: Path, quiet: bool = False) -> Config:
    """The configuration a run directory's ``config.toml`` holds, in sections or in the flat keys of earlier
    versions (``quiet``: without the lines naming moved keys)."""
    values = read_toml(directory / "config.toml", "config")
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", MovedKey)
        return apply(Config(), values, str(directory))


def run_config_near(path: str | Path) -> Config | None:
    """The configuration of the run directory holding model file ``path`` (itself or in its checkpoints), or None."""
    here = Path(path).resolve().parent
    for d in (here, here.parent):
        if (d / "config.toml").is_file():
            return read_run_config(d, quiet=True)
    return None


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
    ):
        if getattr(config, key) not in allowed:
            raise UsageError(f"{key} must be one of {', '.join(allowed)}, not {getattr(config, key)!r}")
    betas = config.adam_betas
    numbers = isinstance(betas, list) and all(isinstance(b, int | float) and not isinstance(b, bool) for b in betas)
    if not (numbers and len(betas) == 2 and all(0 <= b < 1 for b in betas)):
        raise UsageError(f"adam_betas must be two numbers in [0, 1), like [0.9, 0.999], not {betas!r}")
    if config.grad_clip < 0:
        raise UsageError(f"grad_clip must be 0 (none) or a positive norm, not {config.grad_clip}")
    for key in ("signal_channels", "signal_steps", "truncate_backprop", "checkpoint_steps", "mutation_count",
                "lr_warmup"):  # fmt: skip
        if getattr(config, key) < 0:
            raise UsageError(f"{key} must be 0 or more, not {getattr(config, key)}")
    if config.condition_channels < 0:
        raise UsageError(f"condition_channels must be 0 or more, not {config.condition_channels}")
    if config.signal_channels > config.channels - 4:
        raise UsageError(
            f"signal_channels ({config.signal_channels}) exceeds the {config.channels - 4} hidden channels"
        )
    names = loss_names(config.loss)
    for name, weight in config.loss_weights.items():
        if name not in names:
            raise UsageError(f"loss_weights names '{name}', which is not in loss {config.loss!r}")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            raise UsageError(f"loss_weights: the weight of {name} must be a number, not {weight!r}")
    if config.steps_max < config.steps_min:
        raise UsageError(f"steps_max ({config.steps_max}) is below steps_min ({config.steps_min})")
    if config.mode != "growing" and config.pool_size < config.batch:
        raise UsageError(f"pool_size ({config.pool_size}) is smaller than batch ({config.batch})")
    if config.damage_count >= config.batch and config.mode == "regenerating":
        raise UsageError(f"damage_count ({config.damage_count}) must be below batch ({config.batch})")
    _validate_damage(config)
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
    from ncacli.registry import ARCHITECTURES, OBJECTIVES, PERCEPTIONS, TASKS, UPDATES

    ARCHITECTURES.get(config.architecture, "architecture")
    ARCHITECTURES.options(config.architecture, config.architecture_options, f"{origin}: architecture")
    PERCEPTIONS.get(config.perception, "perception")
    PERCEPTIONS.options(config.perception, config.perception_options, f"{origin}: perception")
    UPDATES.get(config.update, "update")
    UPDATES.options(config.update, config.update_options, f"{origin}: update")
    names = loss_names(config.loss)
    for name in names:
        OBJECTIVES.get(name, "loss")
    for name in dict.fromkeys([*names, *config.objectives]):
        options = config.objectives.get(name, {})
        OBJECTIVES.get(name, "objective")
        where = f"{origin}: objectives.{name}"
        OBJECTIVES.options(name, options, where, required=name in names)
        inputs = [f.name for f in option_fields(OBJECTIVES[name]) if f.required and f.name in options]
        if name not in names and inputs:  # its input given, the objective left out: a slip, not a default
            raise UsageError(
                f"{where}.{inputs[0]} is read by the {name} objective only, and loss is {config.loss!r}: add it to "
                "the loss (--loss)"
            )
        if name in names:
            config.objective(name)  # the objective's own checks of its values
    task = TASKS.get(config.task_name(), "task")
    TASKS.options(config.task_name(), config.task_options, f"{origin}: [task]")
    offered = getattr(task, "trains_with", None)  # the objectives a task trains with, where it names them
    if offered is not None and any(name not in offered for name in names):
        raise UsageError(
            f"--task {config.task_name()} trains with {' or '.join(offered)}; --loss {config.loss} is not offered"
        )
    critics = [name for name in names if getattr(OBJECTIVES[name], "needs_real", False)]  # a critic's objective
    if critics and not task.real_samples:
        raise UsageError(
            f"--loss {config.loss}: {critics[0]} trains a critic against real pictures, and --task "
            f"{config.task_name()} has none to give it"
        )
    if critics and config.classes() and not all(getattr(OBJECTIVES[n], "takes_samples", False) for n in names):
        raise UsageError(
            f"--loss {config.loss}: a conditional model's critic judges each sample against its class's target, "
            "and a term of this loss cannot"
        )
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
        raise UsageError(f"several targets need an objective that compares with them (mse); loss is {config.loss!r}")
    damaged = config.damage_count if config.mode == "regenerating" else 0
    if n and config.mode != "growing" and damaged + config.mutation_count >= config.batch:
        raise UsageError(
            f"damage_count + mutation_count ({damaged + config.mutation_count}) must be below batch "
            f"({config.batch}): one sample of each batch is a fresh seed"
        )


def needs_image(config: Config) -> bool:
    """Whether every objective of the loss compares with a target image (what a conditional run trains with:
    one target per class)."""
    from ncacli.registry import OBJECTIVES

    return all(getattr(OBJECTIVES.get(name, "loss"), "needs_target", True) for name in loss_names(config.loss))
