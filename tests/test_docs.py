"""The documentation: the key table is the generated one, the sources are named, the README stays short."""

from __future__ import annotations

import re
from dataclasses import fields

from conftest import ROOT
from ncacli.config import SECTIONS, Config
from ncacli.docs_table import BEGIN, END, config_table, rows, sections

CONFIGURATION = ROOT / "docs" / "configuration.md"
PASTE = "run `python -m ncacli.docs_table` and paste its output between the markers in docs/configuration.md"


def documented_table() -> str:
    text = CONFIGURATION.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1, f"docs/configuration.md needs the markers {BEGIN} … {END}"
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    assert start < end, "the end marker of the key table comes before its start"
    return text[start:end].strip("\n") + "\n"


def test_the_key_table_in_the_docs_is_the_generated_one():
    assert documented_table() == config_table(), f"the key table in docs/configuration.md is out of date: {PASTE}"


def test_every_config_key_is_in_the_table_with_a_description():
    keys = [re.match(r"\| [^|]* \| `(\w+)` \|", line) for line in documented_table().splitlines()[2:]]
    assert None not in keys, "a row of the key table does not name a key in its second column"
    listed = [m.group(1) for m in keys if m]
    own = [f.name for cls in SECTIONS.values() for f in fields(cls) if f.name in cls.__annotations__]
    assert listed[: len(own)] == own, f"keys of the configuration's sections missing or out of order: {PASTE}"
    assert {f.name for f in fields(Config)} - set(own) == {"task", "task_options", "objectives"}
    for group, cls in sections():  # every option of every built-in task and objective
        assert {r.name for r in rows() if r.group == group} == {f.name for f in fields(cls)}, group
    undocumented = [r.name for r in rows() if not r.description]
    assert not undocumented, (
        f"config keys without a description: {undocumented}; give each a trailing # comment in its class "
        f"(or an entry in ncacli.docs_table.DESCRIPTIONS), then {PASTE}"
    )


def markdown_files():
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_no_source_document_is_named_by_a_file_number():
    found = []
    for path in markdown_files():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"seed 00\d", line, re.IGNORECASE):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "name the source document by what it is (the NCAtorch review, nca-clip, …):\n" + "\n".join(found)


def test_the_readme_stays_short():
    size = len((ROOT / "README.md").read_bytes())
    assert size < 12 * 1024, f"README.md is {size} bytes; keep it under 12 KB and move details to docs/"
