"""Every fixed list of names the toolkit accepts, defined once (no torch import: the verbs' ``--help`` reads them).

Lists of things plugins can add to (perceptions, objectives, tasks, metrics, suites) live in
:mod:`ncacli.registry` instead.
"""

from __future__ import annotations

# how a step runs (ncacli.engine.nca); ``auto`` picks one by device (ncacli.engine.device.auto_engine)
ENGINES = ("active", "reference", "fused")
ENGINE_CHOICES = ("auto", *ENGINES)
# engines the benchmark compares with its plain reference (fused has its own check: benchmarks/cuda_checks.py)
BENCH_ENGINES = ("auto", "active", "reference")
PADDING_MODES = ("zeros", "circular")
# which cells live: a living neighbourhood by alpha (Growing NCA), or the fixed input's cells (self-classifying)
ALIVE_FROM = ("alpha", "input")
SEED_KINDS = ("distill", "random_color", "zeros")
BACKGROUNDS = ("white", "black", "none")
MODES = ("growing", "persistent", "regenerating")
LR_SCHEDULES = ("step", "cosine")
GROWTH_LOSSES = ("proportional", "constant", "gated", "none")
STYLE_LOSSES = ("sot", "gram")
CLIP_AUGMENTS = ("crop", "resize")
DAMAGE_SHAPES = ("circle", "square", "left", "right", "top", "bottom")
DAMAGE_CENTERS = ("middle", "alive")  # where training cuts are centred: config key damage_center
PERTURBATIONS = ("damage", "none", "mutation")
BENCH_STARTS = ("grown", "seed", "full")
