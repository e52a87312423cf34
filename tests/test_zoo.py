"""The zoo: every model shipped in the package loads by name, measures what its card says (a short `nca evaluate`
with a fixed seed, within the noise the card states), renders its page, and has its card in docs/zoo.md."""

from __future__ import annotations

import shlex

import pytest

from conftest import ROOT, last_json, real_weights, run_cli
from ncacli.zoo import entries

NAMES = list(entries())


def test_nca_zoo_lists_every_model(capsys):
    code, out, err = run_cli(capsys, "zoo", "--json")
    assert code == 0, err
    listed = {row["name"]: row for row in last_json(out)}
    assert list(listed) == NAMES
    for row in listed.values():
        assert row["parameters"] > 0 and row["iterations"] <= row["budget"] and row["quality"]


CHECKS = [(name, i) for name in NAMES for i in range(len(entries()[name]["checks"]))]
_MEASURED: dict[tuple[str, int], dict] = {}


def measured(capsys, name: str, i: int) -> dict:
    """The card's check command run again (by name: the packaged file), with real AlexNet weights when this
    machine has them, else without LPIPS; its JSON document, kept for the other test of the same check. A
    texture's style distance means something through the real VGG16 alone: without it the check is skipped."""
    if (name, i) not in _MEASURED:
        words = shlex.split(entries()[name]["checks"][i]["command"])
        assert words[:3] == ["nca", "evaluate", name]
        if "--metric" in words and "style" in words[words.index("--metric") + 1].split(","):
            words += ["--vgg-weights", real_weights("vgg16")]
        if any("lpips" in w for w in words):
            try:
                words += ["--lpips-weights", real_weights("alexnet")]
            except pytest.skip.Exception:  # no weights here: measure the rest
                at = words.index("--metric") + 1
                words[at] = ",".join(m for m in words[at].split(",") if m != "lpips")
        code, out, err = run_cli(capsys, *words[1:], "--json")
        assert code == 0, err
        _MEASURED[name, i] = last_json(out)
    return _MEASURED[name, i]


def check_figures(doc: dict, check: dict, lpips: bool) -> int:
    """Every figure of ``check`` (LPIPS's, or the others') against the re-measured ``doc``; how many."""
    count = 0
    for key, value in check["values"].items():
        metric, figure = key.split(".")
        if (metric == "lpips") != lpips:
            continue
        got = doc["metrics"][metric][figure]
        got = got["mean"] if isinstance(got, dict) else got
        assert got == pytest.approx(value, abs=check["noise"][key]), (key, got, value, check["noise"][key])
        count += 1
    return count


@pytest.mark.parametrize("name, i", CHECKS)
def test_a_zoo_model_measures_what_its_card_says(capsys, name, i):
    check = entries()[name]["checks"][i]
    assert set(check["noise"]) == set(check["values"])
    assert check_figures(measured(capsys, name, i), check, lpips=False) >= 1


@pytest.mark.parametrize("name, i", [c for c in CHECKS if "lpips" in entries()[c[0]]["checks"][c[1]]["command"]])
def test_a_zoo_model_measures_the_lpips_its_card_says(capsys, name, i):
    real_weights("alexnet")  # skipped, saying why, where no real AlexNet can be had
    check = entries()[name]["checks"][i]
    assert check_figures(measured(capsys, name, i), check, lpips=True) >= 1


def test_every_image_model_states_lpips_at_the_three_stages_and_its_recovery():
    for name, entry in entries().items():
        if entry["task"] != "image":
            continue
        figures = entry["figures"]
        for stage in ("stage1", "stage2", "stage3", "recovery"):
            assert f"lpips_{stage}" in figures, (name, stage)
        if entry.get("conditional"):
            assert "mutation_lpips_recovery" in figures, name
        assert "LPIPS" in entry["quality"] and entry["review"], name


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


def test_every_verb_that_takes_a_model_takes_a_zoo_name(capsys, tmp_path):
    name = NAMES[0]
    code, out, err = run_cli(capsys, "info", name, "--json")
    assert code == 0, err
    assert last_json(out)["file"] == entries()[name]["path"]
    code, _, err = run_cli(capsys, "grow", name, "-n", "2", "--out", tmp_path / "x.png")
    assert code == 0 and (tmp_path / "x.png").is_file(), err
    code, _, err = run_cli(capsys, "info", "no-such-model", "--json")
    assert code == 1 and "no-such-model: file not found" in err
