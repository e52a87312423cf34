"""Option groups the verbs share, each defined once: a dataclass whose fields are command-line options.

A verb takes a group as one parameter whose default is the group's class (``zoom: Zoom = Zoom``). :func:`grouped`
spreads the group's fields into the verb's options (each field's ``typer.Option`` comes from :func:`flag`,
shown under the group's heading in ``--help``) and hands the verb one instance. One definition of ``--zoom`` …
``--zoom-mode`` serves ``nca grow`` and ``nca render``; one of ``--shape``, ``--center``, ``--radius`` serves
``nca damage``, ``nca render`` and ``nca evaluate``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import typer


def flag(default: Any, *decls: str, **options: Any) -> Any:
    """A group's field: its default, and the flags and help of the option that sets it."""
    return dataclasses.field(default=default, metadata={"decls": decls, "options": options})


def grouped(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with each parameter whose default is a group class spread into that group's options."""
    hints = typing.get_type_hints(fn)
    params, groups = [], {}
    for p in inspect.signature(fn).parameters.values():
        cls = p.default
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            params.append(p.replace(annotation=hints.get(p.name, p.annotation)))
            continue
        groups[p.name] = cls
        types = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            option = typer.Option(f.default, *f.metadata["decls"], rich_help_panel=cls.panel, **f.metadata["options"])
            params.append(inspect.Parameter(f"{p.name}__{f.name}", p.kind, default=option, annotation=types[f.name]))

    @functools.wraps(fn)
    def verb(**given: Any) -> Any:
        for name, cls in groups.items():
            given[name] = cls(**{f.name: given.pop(f"{name}__{f.name}") for f in dataclasses.fields(cls)})
        return fn(**given)

    del verb.__wrapped__  # the signature is the spread one
    verb.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    verb.__annotations__ = {p.name: p.annotation for p in params}
    return verb


@dataclass(frozen=True)
class Zoom:
    """Fractal growth: the grid scaled up as it grows."""

    panel: ClassVar[str] = "Fractal growth"
    factor: Optional[float] = flag(
        None, "--zoom", help="Scale the grid (every channel) by this factor (> 1) as it grows."
    )
    every: Optional[int] = flag(None, "--zoom-every", help="Zoom after every N steps (default 64).")
    times: Optional[int] = flag(None, "--zooms", help="Zoom this many times (default 1).")
    mode: Optional[str] = flag(None, "--zoom-mode", help="How to upsample: nearest (default), bilinear.")


@dataclass(frozen=True)
class Cut:
    """A hole cut in the pattern."""

    panel: ClassVar[str] = "Damage"
    shape: Optional[str] = flag(
        None, "--shape", "-s", help="circle, square, left, right, top, bottom (default circle; textures: top)."
    )
    center: Optional[str] = flag(
        None,
        "--center",
        help="Centre x,y in fractions of the grid (half cuts: the cut line). Default 0.5,0.5; nca evaluate: a "
        "random living cell per trial (circle, square).",
    )
    radius: float = flag(0.2, "--radius", "-r", min=0.0, help="Radius (square: half side), a fraction of the width.")


@dataclass(frozen=True)
class Reads:
    """What a model reads as it grows: a class, a map of classes, an input."""

    panel: ClassVar[str] = "What the model reads"
    condition: Optional[str] = flag(
        None,
        "--condition",
        "--class",
        "-c",
        help="Conditional models: the class to grow, an index or a name (default 0).",
    )
    condition_map: Optional[str] = flag(
        None, "--condition-map", help="Conditional models: an image whose brightness picks each cell's class."
    )
    input: Optional[str] = flag(
        None,
        "--input",
        "--image",
        help="Models that read an input: what to grow from (a classifier: a class, or #N; an inpainting model: #N, a "
        "held-out picture, or a picture file of the model's size).",
    )
    mask: Optional[str] = flag(
        None,
        "--mask",
        help="Inpainting models: the hole, a centred shape (circle, square, left, right, top, bottom) or a picture "
        "whose white pixels are the hole.",
    )


@dataclass(frozen=True)
class Guide:
    """Classifier-free guidance, for the models trained for it."""

    panel: ClassVar[str] = "What the model reads"
    guidance: Optional[float] = flag(
        None, "--guidance", help="Models trained with classifier-free guidance: its scale w (1: none, 0: no class)."
    )


def device_option(default: str | None = "auto") -> Any:
    return typer.Option(default, "--device", help="auto, cpu, cuda, cuda:1, mps.")


def json_option(help: str = "Print JSON on stdout.") -> Any:
    return typer.Option(False, "--json", help=help)
