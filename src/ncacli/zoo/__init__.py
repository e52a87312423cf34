"""The zoo: trained models inside the package (``index.toml`` beside them), by name wherever a model path is taken."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@cache
def entries() -> dict[str, dict[str, Any]]:
    """``{name: entry}`` in the index's order; each entry's ``path`` is its model file."""
    index = tomllib.loads((HERE / "index.toml").read_text(encoding="utf-8"))
    return {name: {**entry, "name": name, "path": str(HERE / entry["file"])} for name, entry in index.items()}


def resolve(name: str) -> str:
    """A model path as given, or the zoo model of that name when no such file exists."""
    if name in entries() and not Path(name).exists():
        return entries()[name]["path"]
    return name
