"""One door for every extension: verbs, architectures, perceptions, update rules, objectives, tasks, metrics,
benchmark suites.

Each kind is a :class:`Registry` filled from one entry-point group (``ncacli.<kind>``; verbs and objectives
also read the groups that version 0.1.0 published, ``ncacli.commands`` and ``ncacli.losses``). The built-ins
come through the same groups, from the package's own metadata, before any plugin, so a plugin may replace a
built-in name on purpose. Every loaded object is checked for the interface its kind asks for; one that fails
to import or to pass is reported as a warning and skipped, and ``NCA_NO_PLUGINS=1`` loads the built-ins only.

A registry is a mapping ``name → object`` that fills itself on first use. :meth:`Registry.get` is the one
lookup with a did-you-mean. Two things every entry may declare:

- **options**: a typed options class (``Options``, a dataclass), or, without one, the keyword parameters of
  the object's constructor with their annotations and defaults. :meth:`Registry.options` parses a mapping
  from a preset or ``--set`` against it: unknown keys are refused with a did-you-mean, types are checked.
- **capabilities**: ``capabilities`` (a set of words) says which engines and outputs can run the entry;
  the engines, the benchmark reference and the page ask :func:`capabilities` instead of guessing.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import warnings
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from ncacli.errors import UsageError, did_you_mean
from ncacli.options import OptionField, option_fields, parse_options, type_ok  # noqa: F401  (the one mechanism)

DIST = "ncacli"
DISABLE_ENV = "NCA_NO_PLUGINS"


class PluginWarning(UserWarning):
    """A plugin could not be loaded."""


@dataclass
class PluginRecord:
    kind: str
    name: str
    target: str
    package: str
    builtin: bool
    status: str = "loaded"
    capabilities: list[str] = dataclasses.field(default_factory=list)
    options: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def plugins_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def capabilities(obj: Any) -> frozenset[str]:
    """What an entry (a class, a factory, or an instance) says it supports: ``frozenset`` of words."""
    return frozenset(getattr(obj, "capabilities", ()) or ())


# -- registries ---------------------------------------------------------------------------------------------


class Registry(MutableMapping):
    """``name → object`` for one kind of extension, filled from its entry-point group on first use."""

    def __init__(
        self,
        kind: str,
        interface: str,
        check: Callable[[Any], str | None] = lambda obj: None,
        legacy_groups: tuple[str, ...] = (),
        option_skip: int = 0,  # constructor parameters the toolkit passes itself; -1: options from Options only
    ) -> None:
        self.kind = kind  # plural: "perceptions"
        self.singular = kind[:-1] if kind.endswith("s") else kind
        self.groups = (f"ncacli.{kind}", *legacy_groups)
        self.interface = interface  # what the kind asks of an entry, in words (for errors and docs)
        self.check = check  # obj → None, or why it does not fit
        self.option_skip = option_skip
        self._entries: dict[str, Any] = {}
        self.records: dict[str, PluginRecord] = {}
        self._loaded = False

    # mapping protocol, loading on first use
    def _ensure(self) -> None:
        if not self._loaded:
            self._loaded = True
            self.load()

    def __getitem__(self, name: str) -> Any:
        self._ensure()
        return self._entries[name]

    def __setitem__(self, name: str, obj: Any) -> None:
        self._entries[name] = obj

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        self._ensure()
        return iter(self._entries)

    def __len__(self) -> int:
        self._ensure()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        self._ensure()
        return name in self._entries

    def _discover(self) -> list[tuple[EntryPoint, str, bool]]:
        found, seen = [], set()
        for group in self.groups:
            for ep in entry_points(group=group):
                package = ep.dist.name if ep.dist is not None else "?"
                builtin = package.replace("-", "_") == DIST
                if (ep.name, package) in seen or not (builtin or not plugins_disabled()):
                    continue
                seen.add((ep.name, package))
                found.append((ep, package, builtin))
        return sorted(found, key=lambda item: not item[2])  # built-ins first

    def load(self) -> None:
        """Import every entry point of the kind, check it, and register it."""
        for ep, package, builtin in self._discover():
            record = PluginRecord(self.kind, ep.name, ep.value, package, builtin)
            try:
                obj = ep.load()
                reason = self.check(obj)
                if reason is not None:
                    raise TypeError(f"not {self.interface}: {reason}")
                self._entries[ep.name] = obj
                record.capabilities = sorted(capabilities(obj))
                record.options = {f.name: f.annotation for f in option_fields(obj, self.option_skip)}
            except Exception as exc:  # a broken plugin must not take the tool down
                record.status = f"failed: {type(exc).__name__}: {exc}"
                message = f"{self.singular} plugin {ep.name!r} from {package} failed to load ({exc}); skipped"
                warnings.warn(message, PluginWarning, stacklevel=2)
            self.records[ep.name] = record

    def register(self, name: str, obj: Any, package: str = "__main__") -> None:
        """Add an entry from code (a notebook, a test); checked as an entry point would be."""
        reason = self.check(obj)
        if reason is not None:
            raise TypeError(f"{self.singular} {name!r} is not {self.interface}: {reason}")
        self._ensure()
        self._entries[name] = obj
        self.records[name] = PluginRecord(
            self.kind, name, getattr(obj, "__qualname__", repr(obj)), package, False, "registered",
            sorted(capabilities(obj)), {f.name: f.annotation for f in option_fields(obj, self.option_skip)},
        )  # fmt: skip

    def get(self, name: str, what: str | None = None) -> Any:
        """The entry called ``name``, or one line naming the kind and the closest name."""
        if name not in self:
            raise unknown(what or self.singular, name, list(self))
        return self._entries[name]

    def options(self, name: str, data: dict[str, Any], origin: str, required: bool = True) -> dict[str, Any]:
        """``data`` checked against the options of entry ``name`` (``required=False``: its required options
        may be missing)."""
        return parse_options(self.singular, name, self.get(name), data, origin, self.option_skip, required)


def unknown(kind: str, name: str, known: list[str]):
    """The one did-you-mean: ``unknown perception 'sobl' (did you mean 'sobel'?)``."""
    hint = did_you_mean(name, known) or f"; known: {', '.join(sorted(known))}"
    return UsageError(f"unknown {kind} '{name}'{hint}")


def _callable(obj: Any) -> str | None:
    return None if callable(obj) else f"{type(obj).__name__} is not callable"


def _verb(obj: Any) -> str | None:
    import typer

    return None if isinstance(obj, typer.Typer) or callable(obj) else "neither a Typer app nor a function"


def _derives(obj: Any, base: str) -> bool:
    """Whether the class ``obj`` derives from the class whose dotted path is ``base``: the interface a kind
    asks for is named, not imported, so that the registry stands below every kind it holds."""
    return isinstance(obj, type) and any(f"{c.__module__}.{c.__qualname__}" == base for c in inspect.getmro(obj))


def _task(obj: Any) -> str | None:
    return None if _derives(obj, "ncacli.tasks.base.Task") else "not a subclass of ncacli.tasks.Task"


VERBS = Registry("verbs", "a Typer command function or app", _verb, legacy_groups=("ncacli.commands",))
ARCHITECTURES = Registry(
    "architectures", "a model class Cls(config: ModelConfig, **options) with the NCA's rollout", _callable,
    option_skip=1,
)  # fmt: skip
PERCEPTIONS = Registry(
    "perceptions", "a perception class Cls(channels, padding=..., **options)", _callable, option_skip=2
)
UPDATES = Registry("updates", "an update class Cls(in_features, channels, hidden=, depth=, **options)", _callable,
                   option_skip=4)  # fmt: skip
OBJECTIVES = Registry(
    "objectives", "an objective factory f(target, config, **options) → states ↦ (B,)", _callable,
    legacy_groups=("ncacli.losses",), option_skip=2,
)  # fmt: skip
TASKS = Registry("tasks", "a subclass of ncacli.tasks.Task", _task, option_skip=-1)
METRICS = Registry("metrics", "a Metric or a factory f(device, **options) → Metric", _callable, option_skip=1)
SUITES = Registry("suites", "a benchmark suite f(sizes) → list of cases", _callable)

REGISTRIES: dict[str, Registry] = {
    r.kind: r for r in (VERBS, ARCHITECTURES, PERCEPTIONS, UPDATES, OBJECTIVES, TASKS, METRICS, SUITES)
}


def records() -> list[PluginRecord]:
    """Every entry of every kind (loading them all), built-ins first within a kind."""
    out = []
    for registry in REGISTRIES.values():
        registry._ensure()
        out += registry.records.values()
    return sorted(out, key=lambda r: (r.kind, not r.builtin, r.name))
