"""The house's shape, read from the source: no module imports itself through others, the verbs are imported by
nothing below them, and the engine stands on nothing but names, errors and the registry.

Every import statement counts, at the top of a file, inside a function or under ``TYPE_CHECKING``: an import
moved into a function still ties the two files together."""

from __future__ import annotations

import ast
from pathlib import Path

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
    assert graph()["ncacli.registry"] <= {"ncacli.errors"}
