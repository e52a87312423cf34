"""The NCA engine: pure torch (and one C kernel for the CPU, built on first use by
:mod:`ncacli.engine.native`), no user files, no terminal."""

from ncacli.engine.condition import one_hot, other_labels, ramp
from ncacli.engine.counter_random import CounterRandom
from ncacli.engine.damage import SHAPES, apply_damage, damage_mask, living_cells, random_circles
from ncacli.engine.nca import ALPHA, NCA, ModelConfig
from ncacli.engine.perception import PERCEPTIONS, register_perception
from ncacli.engine.pool import SamplePool
from ncacli.engine.seeds import SEED_KINDS, make_seed, seed_position_for
from ncacli.engine.visible import visible_rgb


def build_model(config: ModelConfig):
    """The model ``config`` describes: an :class:`NCA`, or the registered architecture it names (``unet``), built
    with its options."""
    from ncacli.registry import ARCHITECTURES

    cls = ARCHITECTURES.get(config.architecture, "architecture")
    return cls(config) if cls is NCA else cls(config, **config.architecture_options)


__all__ = [
    "build_model",
    "ALPHA",
    "CounterRandom",
    "NCA",
    "PERCEPTIONS",
    "SEED_KINDS",
    "SHAPES",
    "ModelConfig",
    "SamplePool",
    "apply_damage",
    "damage_mask",
    "make_seed",
    "one_hot",
    "other_labels",
    "ramp",
    "living_cells",
    "random_circles",
    "seed_position_for",
    "register_perception",
    "visible_rgb",
]
