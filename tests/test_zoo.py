"""The zoo: every model shipped in the package loads by name, measures what its card says (a short `nca evaluate`
with a fixed seed, within the noise the card states), renders its page, and has its card in docs/zoo.md."""

from __future__ import annotations

import shlex

import pytest

from conftest import ROOT, last_json, run_cli
from ncacli.zoo import entries

NAMES = list(entries())


def test_nca_zoo_lists_every_model(capsys):
    code, out, err = run_cli(capsys, "zoo", "--json")
    assert code == 0, err
    listed = {row["name"]: row for row in last_json(out)}
    assert list(listed) == NAMES
    for row in listed.values():
        assert row["parameters"] > 0 and row["iterations"] <= row["budget"] and row["quality"]


@pytest.mark.parametrize("name", NAMES)
def test_a_zoo_model_measures_what_its_card_says(capsys, name):
    check = entries()[name]["check"]
    words = shlex.split(check["command"])
    assert words[:3] == ["nca", "evaluate", name]
    code, out, err = run_cli(capsys, *words[1:], "--json")  # by name: the packaged file
    assert code == 0, err
    doc = last_json(out)
    value = doc["metrics"][check["metric"]][check["stage"]]
    value = value["mean"] if isinstance(value, dict) else value
    assert value == pytest.approx(check["value"], abs=check["noise"]), (name, value)


@pytest.mark.parametrize("name", NAMES)
def test_a_zoo_model_renders_its_page_and_has_its_card(capsys, tmp_path, name):
    import ncacli.api as nca

    model = nca.load(name)
    entry = entries()[name]
    assert model.path == entry["path"] and model.provenance.get("iterations") == entry["iterations"]
    if "page" in model.task.capabilities:
        code, _, err = run_cli(capsys, "render", name, tmp_path / "page.html")
        assert code == 0, err
        page = (tmp_path / "page.html").read_text(encoding="utf-8")
        assert "<canvas" in page and f"<title>nca · {name} (" in page
    card = (ROOT / "docs" / "zoo.md").read_text(encoding="utf-8")
    assert f"## `{name}`" in card and entry["command"] in card and f"{entry['iterations']:,}" in card


def test_a_file_of_the_same_name_wins_over_the_zoo(tmp_path, monkeypatch):
    from ncacli.zoo import resolve

    monkeypatch.chdir(tmp_path)
    assert resolve(NAMES[0]) == entries()[NAMES[0]]["path"]
    (tmp_path / NAMES[0]).write_bytes(b"")
    assert resolve(NAMES[0]) == NAMES[0]
