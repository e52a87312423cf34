"""What a user names, checked in one place below the verbs, the API, training and evaluation: a device, an
engine, a name among the known ones, a class of a conditional model. Each bad value is one line that names
the option."""

from __future__ import annotations

from pathlib import Path

from ncacli.console import console
from ncacli.errors import UsageError
from ncacli.names import ENGINE_CHOICES
from ncacli.registry import unknown


def device(name: str):
    """``--device``: ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps`` → the torch device, or one line."""
    from ncacli.engine.device import resolve_device

    try:
        return resolve_device(name)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"--device {name}: {exc}") from None


ENGINE_NAMES = list(ENGINE_CHOICES)


def use_engine(model, name: str) -> str:
    """Set ``model.engine`` from ``--engine``, ``auto`` resolved for the model's device
    (:func:`ncacli.engine.device.auto_engine`; the fused kernel is chosen by name only); a fused engine that
    cannot run this model says why in one line on stderr. Returns the engine set."""
    from ncacli.engine.device import auto_engine

    check_name("engine", name, ENGINE_NAMES)
    chosen = auto_engine(next(model.parameters()).device) if name == "auto" else name
    model.engine = chosen
    if chosen == "active" and not model.active_ok:
        chosen = "reference"  # what runs: the model's cells live by its input, or its update has no rows
    if chosen == "fused":
        from ncacli.engine.fused import fused_supported

        reason = fused_supported(model)
        if reason is not None:
            note = f"--engine fused: {reason}; steps run on the active engine"
            console.print(note, highlight=False, markup=False, soft_wrap=True)
    return chosen


def check_name(kind: str, name: str, known: list[str]) -> None:
    """``name`` is one of ``known``, or one line with the closest."""
    if name not in known:
        raise unknown(kind, name, known)


def class_index(names: list[str], classes: int, text: str, option: str = "--condition") -> int:
    """A class by its index (0-based) or its name: the emoji, ``emoji 🦋``, or the target's file name."""
    try:
        index = int(text)
    except ValueError:
        wanted = text.strip()
        for i, name in enumerate(names):
            short = name.removeprefix("emoji ")
            if wanted in (name, short) or (wanted and wanted in (Path(short).name, Path(short).stem)):
                return i
        listed = ", ".join(f"{i} = {n}" for i, n in enumerate(names)) or f"0 … {classes - 1}"
        raise UsageError(f"{option} {text!r}: not a class of this model ({listed})") from None
    if not 0 <= index < classes:
        raise UsageError(f"{option} {index}: this model has classes 0 … {classes - 1}")
    return index


def not_conditional(option: str) -> UsageError:
    return UsageError(f"{option}: this model is not conditional (train one on several --emoji/--target)")
