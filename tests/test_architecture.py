"""The house's shape, read from the source: no module imports itself through others, every import runs down the
floors (the few that run up are listed with their reasons), the verbs are imported by nothing below them, the
engine stands on nothing but names, errors and the registry, and no kind is named outside its own module.

Every import statement counts, at the top of a file, inside a function or under ``TYPE_CHECKING``: an import
moved into a function still ties the two files together."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import typer
from typer.testing import CliRunner

from ncacli.cli import groups

SRC = Path(__file__).resolve().parent.parent / "src"


def modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "ncacli").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports (a name taken from a package counts as its module when
    there is one, else as the package)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            wanted = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            wanted = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in wanted:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_through_others():
    assert circles(graph()) == []


def test_the_verbs_are_imported_by_nothing_below_them():
    below = {
        name: sorted(t for t in targets if t == "ncacli.cli" or t.startswith("ncacli.cli."))
        for name, targets in graph().items()
        if not (name == "ncacli.cli" or name.startswith("ncacli.cli.") or name == "ncacli.__main__")
    }
    assert {name: cli for name, cli in below.items() if cli} == {}


def test_the_engine_stands_on_names_errors_and_the_registry():
    allowed = ("ncacli.engine", "ncacli.names", "ncacli.errors", "ncacli.registry")
    outside = {
        name: sorted(t for t in targets if not any(t == a or t.startswith(a + ".") for a in allowed))
        for name, targets in graph().items()
        if name == "ncacli.engine" or name.startswith("ncacli.engine.")
    }
    assert {name: found for name, found in outside.items() if found} == {}


def test_the_registry_knows_no_kind():
    """The registry stands on errors and the one options mechanism, which stands on errors alone."""
    assert graph()["ncacli.registry"] <= {"ncacli.errors", "ncacli.options"}
    assert graph()["ncacli.options"] <= {"ncacli.errors"}


# Where a kind is still named outside its own module, and why. The list may only shrink: a new place fails the
# test below, and a place that no longer names the kind must leave the list.
STILL_NAMED: dict[tuple[str, str], str] = {}


def kind_names() -> tuple[dict[str, set[str]], dict[str, str]]:
    """``{name: modules that define an entry of that name}`` over tasks, perceptions, updates, objectives and
    metrics, and ``{class name: its module}`` of the classes among them."""
    from ncacli.registry import METRICS, OBJECTIVES, PERCEPTIONS, TASKS, UPDATES

    names: dict[str, set[str]] = {}
    classes: dict[str, str] = {}
    for registry in (TASKS, PERCEPTIONS, UPDATES, OBJECTIVES, METRICS):
        for name in registry:
            entry = registry[name]
            module = getattr(entry, "__module__", None) or type(entry).__module__
            names.setdefault(name, set()).add(module)
            if isinstance(entry, type):
                classes[entry.__name__] = entry.__module__
    return names, classes


def named_kinds(source: str, module: str, names: dict[str, set[str]], classes: dict[str, str]) -> set[str]:
    """The kinds ``source`` (the text of ``module``) names outside their own modules: a comparison with an
    entry's name (``==``, ``in``, a tuple of them), or ``isinstance``/``issubclass`` of an entry's class."""

    def strings(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [s for element in node.elts for s in strings(element)]
        return []

    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                found |= {s for s in strings(side) if s in names and module not in names[s]}
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "issubclass"):
            kinds = node.args[1] if len(node.args) == 2 else None
            for element in kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]:
                name = getattr(element, "id", None) or getattr(element, "attr", None)
                if name in classes and classes[name] != module:
                    found.add(name)
    return found


def test_the_kind_finder_finds_a_name_and_a_class():
    names, classes = {"sobel": {"ncacli.engine.perception"}}, {"MLPUpdate": "ncacli.engine.update"}
    text = 'if cfg.perception == "sobel" or isinstance(u, MLPUpdate) or x in ("a", "sobel"): pass'
    assert named_kinds(text, "ncacli.web.program", names, classes) == {"sobel", "MLPUpdate"}
    assert named_kinds(text, "ncacli.engine.perception", names, {}) == set()


def test_no_kind_is_named_outside_its_own_module():
    names, classes = kind_names()
    found = set()
    for name, path in modules().items():
        if name == "ncacli.registry":
            continue
        where = path.relative_to(SRC).as_posix()
        found |= {(where, kind) for kind in named_kinds(path.read_text(encoding="utf-8"), name, names, classes)}
    assert found - set(STILL_NAMED) == set(), "a kind named outside its module: ask what it declares instead"
    assert set(STILL_NAMED) - found == set(), "no longer named there: take it off STILL_NAMED"


def test_option_groups_are_declared_once():
    """The options the verbs share (fractal growth, damage, what a model reads, --device, --json) are defined in
    ``cli/groups.py`` alone, and each verb that takes a group hands its function one instance of it."""
    shared = {"--device", "--json"}
    for cls in (groups.Zoom, groups.Cut, groups.Reads, groups.Guide):
        shared |= {f.metadata["decls"][0] for f in dataclasses.fields(cls)}
    declared: dict[str, set[str]] = {}
    for path in (SRC / "ncacli" / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Option":
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and arg.value in shared:
                        declared.setdefault(arg.value, set()).add(path.name)
    own = {("--condition", "evaluate.py"): "every trial's class, not the class a growth reads"}
    again = {(flag, name) for flag, where in declared.items() for name in where if name != "groups.py"}
    assert again == set(own), "an option of a group declared again: take the group (ncacli.cli.groups)"

    seen = {}

    @groups.grouped
    def verb(n: int = typer.Option(1, "--n"), zoom: groups.Zoom = groups.Zoom, cut: groups.Cut = groups.Cut) -> None:
        seen.update(n=n, zoom=zoom, cut=cut)

    app = typer.Typer()
    app.command()(verb)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, ["verb", "--zoom", "1.5", "--zooms", "2", "-s", "top", "--n", "3"])
    assert result.exit_code == 0, result.output
    assert seen == {"n": 3, "zoom": groups.Zoom(1.5, None, 2, None), "cut": groups.Cut("top", None, 0.2)}


# the generic measures nca evaluate and the tasks' own evaluations share: below the tasks
MEASURES = ("metrics", "protocol", "report", "plot", "lpips_metric", "style_metric")
# The floors of the house, lowest first: a module imports from its own floor and those below it.
FLOORS = [
    ("errors and names", ["ncacli", "ncacli.errors", "ncacli.names", "ncacli.options", "ncacli.console", "ncacli.zoo"]),
    ("the registry", ["ncacli.registry"]),
    ("the engine", ["ncacli.engine"]),
    ("the spec and the configuration", ["ncacli.spec", "ncacli.config"]),
    ("files", ["ncacli.io", "ncacli.choices"]),
    (
        "tasks, objectives and measures",
        ["ncacli.tasks", "ncacli.losses"] + [f"ncacli.evaluation.{m}" for m in MEASURES],
    ),
    ("training and evaluation", ["ncacli.train", "ncacli.evaluation", "ncacli.web"]),
    ("the Python API", ["ncacli.api"]),
    ("benchmarks", ["ncacli.bench"]),
    ("the verbs", ["ncacli.cli", "ncacli.__main__", "ncacli.docs_table"]),
]
# The imports that run up a floor, and why each is right.
UPWARD = {
    ("ncacli.tasks.pixels", "ncacli.train.pixels"): "nca-clip's pixel baseline hands out its own trainer and saver "
    "(Task.trainer, Task.saver): a subclass of the training loop's Trainer, so it lives where that does",
}


def floor_of(module: str) -> int:
    found = [(len(p), i) for i, (_, prefixes) in enumerate(FLOORS) for p in prefixes
             if module == p or module.startswith(p + ".")]  # fmt: skip
    assert found, f"{module} stands on no floor: add it to FLOORS"
    return max(found)[1]


def test_every_import_runs_down_the_floors():
    edges = graph()
    up = {(m, t) for m, targets in edges.items() for t in targets if floor_of(t) > floor_of(m)}
    assert up == set(UPWARD), "an import from a lower floor to a higher one: move the code, or say why in UPWARD"
