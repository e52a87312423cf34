"""The one typed mechanism behind every option of the toolkit.

A set of options is described by fields (:class:`OptionField`: a name, an annotation written as text, a
default, whether it is required), read from a dataclass (a configuration section, an entry's ``Options``) or
from a constructor's keyword parameters. :func:`check_options` checks a mapping from a preset, a
``--config`` file or ``--set`` against them: an unknown key is refused with the toolkit's one did-you-mean,
a value of the wrong type with the type it must have, a missing required option by name; whole numbers
given for a configuration's ``float`` become floats. The configuration's sections, perceptions, update
rules, objectives and tasks all pass through it.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

from ncacli.errors import UsageError, did_you_mean

_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
    "list": (list, tuple),
    "dict": (dict,),
    "tuple": (list, tuple),
}


def type_ok(annotation: str, value: Any) -> bool:
    """Whether ``value`` fits an annotation written as text: ``int``, ``float | None``, ``list[str]``, …"""
    for part in (p.strip() for p in str(annotation).split("|")):
        base = part.split("[", 1)[0].strip()
        if base == "None" and value is None:
            return True
        if base in ("Any", "object", "Mapping", "Sequence", "inspect._empty"):
            return True
        kinds = _TYPES.get(base)
        if kinds is None:
            return True  # a type this check does not know: the constructor decides
        if isinstance(value, bool) and bool not in kinds:
            continue
        if isinstance(value, kinds):
            return True
    return False


@dataclass(frozen=True)
class OptionField:
    name: str
    annotation: str
    default: Any
    required: bool = False
    flag: str = ""  # the command-line option that sets it, where one does (a dataclass field's metadata "flag")


def _annotation_text(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "Any"
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def option(default: Any = dataclasses.MISSING, flag: str = "") -> Any:
    """A dataclass field of an ``Options`` class that a verb's ``flag`` also sets (no default: required)."""
    return dataclasses.field(default=default, metadata={"flag": flag})


def dataclass_fields(cls: type) -> list[OptionField]:
    """A dataclass's fields as options (a field without a default is required)."""
    out = []
    for f in dataclasses.fields(cls):
        has = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        out.append(OptionField(f.name, _annotation_text(f.type), default, not has, f.metadata.get("flag", "")))
    return out


def option_fields(obj: Any, skip: int = 0) -> list[OptionField]:
    """The options an entry takes: its ``Options`` dataclass's fields, else its constructor's keyword
    parameters after the first ``skip`` (the ones the toolkit passes itself, like ``channels``)."""
    cls = getattr(obj, "Options", None)
    if cls is not None and dataclasses.is_dataclass(cls):
        return dataclass_fields(cls)
    if skip < 0 or not (inspect.isclass(obj) or inspect.isroutine(obj)):
        return []  # an instance (a Metric), or a kind whose options come from ``Options`` only (tasks)
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    params = [p for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return [
        OptionField(p.name, _annotation_text(p.annotation), None if p.default is p.empty else p.default)
        for p in params[skip:]
    ]


def check_options(
    fields: list[OptionField],
    data: dict[str, Any],
    origin: str,
    owner: str,
    required: bool = True,
    floats: bool = False,
) -> dict[str, Any]:
    """``data`` checked against ``fields`` → the values to use.

    ``owner`` names whose options they are in a message (``perception 'conv'``, ``[training]``);
    ``required=False`` lets required options be missing (a layer of the configuration that sets a few);
    ``floats=True`` turns whole numbers given for a ``float`` into floats (the configuration's own keys; an
    entry's options are kept as written, as model files store them)."""
    known = {f.name: f for f in fields}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            takes = f"; it takes {', '.join(sorted(known))}" if known else "; it takes no options"
            hint = did_you_mean(key, known) or takes
            raise UsageError(f"{origin}: {owner} has no option '{key}'{hint}")
        annotation = known[key].annotation
        if not type_ok(annotation, value):
            article = "an" if annotation[:1] in "aeiou" else "a"
            raise UsageError(f"{origin}: {owner} option {key} must be {article} {annotation}, not {value!r}")
        is_float = annotation.split("|")[0].strip() == "float"
        whole = isinstance(value, int) and not isinstance(value, bool)
        out[key] = float(value) if floats and is_float and whole else value
    missing = [f for f in fields if f.required and f.name not in data]
    if required and missing:
        flag = f" ({missing[0].flag})" if missing[0].flag else ""
        raise UsageError(f"{origin}: {owner} needs the option {missing[0].name}{flag}")
    return out


def parse_options(
    kind: str, name: str, obj: Any, data: dict[str, Any], origin: str, skip: int = 0, required: bool = True
) -> dict[str, Any]:
    """Check ``data`` against the entry's options → the options to pass (unknown keys and wrong types refused)."""
    return check_options(option_fields(obj, skip), data, origin, f"{kind} '{name}'", required)


def flag_options(entries: Any, given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The verb's options that set an entry's own (``--prompt`` for CLIP, ``--lpips-net`` for LPIPS): each entry's
    option fields name their flag, whose Python spelling is looked up in ``given`` (a value of None: not given)
    → ``{entry: {option: value}}``. ``entries``: a registry, or any mapping of names to entries."""
    out: dict[str, dict[str, Any]] = {}
    for name in entries:
        for f in option_fields(entries[name]):
            value = given.get(f.flag.lstrip("-").replace("-", "_")) if f.flag else None
            if value is not None:
                out.setdefault(name, {})[f.name] = value
    return out
