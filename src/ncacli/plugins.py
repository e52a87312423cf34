"""Entry-point discovery for verbs, perceptions and losses.

The built-in verbs, perceptions and losses are registered through these same groups in
the package's own metadata. A plugin that fails to import is reported as a warning and
skipped; setting ``NCA_NO_PLUGINS=1`` loads the built-ins only.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

DIST = "ncacli"
DISABLE_ENV = "NCA_NO_PLUGINS"
GROUPS = {
    "commands": "ncacli.commands",
    "perceptions": "ncacli.perceptions",
    "losses": "ncacli.losses",
}


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RECORDS: dict[tuple[str, str], PluginRecord] = {}
_loaded: set[str] = set()


def plugins_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _discover(kind: str) -> list[tuple[EntryPoint, str, bool]]:
    found = []
    for ep in entry_points(group=GROUPS[kind]):
        package = ep.dist.name if ep.dist is not None else "?"
        builtin = package.replace("-", "_") == DIST
        if builtin or not plugins_disabled():
            found.append((ep, package, builtin))
    # built-ins first, so a plugin may override a built-in name on purpose
    return sorted(found, key=lambda item: not item[2])


def load_group(kind: str, register: Callable[[str, Any], None]) -> list[PluginRecord]:
    """Import every entry point of ``kind`` and pass ``(name, object)`` to ``register``."""
    records = []
    for ep, package, builtin in _discover(kind):
        record = PluginRecord(kind, ep.name, ep.value, package, builtin)
        try:
            register(ep.name, ep.load())
        except Exception as exc:  # a broken plugin must not take the tool down
            record.status = f"failed: {type(exc).__name__}: {exc}"
            message = f"plugin {ep.name!r} from {package} failed to load ({exc}); skipped"
            warnings.warn(message, PluginWarning, stacklevel=2)
        RECORDS[(kind, ep.name)] = record
        records.append(record)
    return records


def load_perceptions() -> None:
    """Fill the perception registry from ``ncacli.perceptions`` (once per process)."""
    if "perceptions" in _loaded:
        return
    _loaded.add("perceptions")
    from ncacli.engine.perception import register_perception

    load_group("perceptions", register_perception)


def load_losses() -> None:
    """Fill the loss registry from ``ncacli.losses`` (once per process)."""
    if "losses" in _loaded:
        return
    _loaded.add("losses")
    from ncacli.losses import register_loss

    load_group("losses", register_loss)


def records() -> list[PluginRecord]:
    return sorted(RECORDS.values(), key=lambda r: (r.kind, not r.builtin, r.name))
