"""``nca benchmark``: speed and memory beside a plain PyTorch reference."""

from __future__ import annotations

from typing import Optional

import typer

from ncacli.errors import NcaError


def benchmark(model_path: Optional[str] = typer.Argument(None, metavar="[MODEL]")) -> None:
    """Speed and memory beside a plain reference (not yet available; see benchmarks/train_step.py)."""
    raise NcaError("`nca benchmark` is not yet available in this version; run `python benchmarks/train_step.py`")
