"""``nca evaluate`` and ``nca benchmark``: registered verbs whose full protocol lands later."""

from __future__ import annotations

from typing import Optional

import typer

from ncacli.errors import NcaError


def evaluate(model_path: Optional[str] = typer.Argument(None, metavar="[MODEL]")) -> None:
    """LPIPS and regeneration (recovery %) after damage or mutation (not yet available)."""
    raise NcaError(
        "`nca evaluate` is not yet available in this version; `nca grow` + `nca damage` can already regrow a pattern"
    )


def benchmark(model_path: Optional[str] = typer.Argument(None, metavar="[MODEL]")) -> None:
    """Speed and memory beside a plain reference (not yet available; see benchmarks/train_step.py)."""
    raise NcaError("`nca benchmark` is not yet available in this version; run `python benchmarks/train_step.py`")
