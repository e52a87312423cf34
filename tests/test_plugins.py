"""Plugins: the example package's verb and perception load through entry points; broken ones warn."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT, TINY, run_nca

EXAMPLE = ROOT / "examples" / "nca-example-plugin"


def install_metadata(site: Path, name: str, groups: dict[str, dict[str, str]]) -> None:
    """Register a distribution's entry points the way pip would: a dist-info folder on the path."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    text = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for group, eps in groups.items()
    )
    (info / "entry_points.txt").write_text(text)


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("site")
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    install_metadata(site, project["name"], project["entry-points"])
    install_metadata(site, "nca-broken-plugin", {"ncacli.commands": {"broken": "nca_no_such_module:verb"}})
    path = os.pathsep.join([str(site), str(EXAMPLE / "src"), os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path}


def test_plugins_lists_the_example_and_warns_about_the_broken_one(plugin_env):
    proc = run_nca("plugins", "--json", env=plugin_env)
    assert proc.returncode == 0, proc.stderr.decode()
    entries = {(e["kind"], e["name"]): e for e in json.loads(proc.stdout)["entries"]}
    assert entries[("verbs", "alive")]["package"] == "nca-example-plugin"
    assert entries[("perceptions", "moore")]["status"] == "loaded"
    assert entries[("verbs", "train")]["builtin"]
    assert entries[("verbs", "broken")]["status"].startswith("failed")
    assert b"nca: warning: verb plugin 'broken' from nca-broken-plugin failed to load" in proc.stderr
    # every kind comes through the same door, the built-ins included
    kinds = {kind for kind, _ in entries}
    assert kinds == {"verbs", "architectures", "perceptions", "updates", "objectives", "tasks", "metrics", "suites"}
    assert entries[("tasks", "classify")]["builtin"] and entries[("perceptions", "conv")]["options"]["kernel_size"]


def test_the_plugin_verb_and_perception_run(plugin_env, tmp_path, target_png):
    out = tmp_path / "moore"
    proc = run_nca(
        "train",
        "--target",
        target_png,
        "--iters",
        "3",
        "--out",
        out,
        *TINY,
        "--set",
        "perception=moore",
        env=plugin_env,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    state = tmp_path / "s.safetensors"
    assert run_nca("grow", out / "model.safetensors", "--steps", "5", "--out", state, env=plugin_env).returncode == 0
    proc = run_nca("alive", state, env=plugin_env)
    assert proc.returncode == 0, proc.stderr.decode()
    data = json.loads(proc.stdout)
    assert data["step"] == 5 and len(data["alive_cells"]) == 1 and data["alive_cells"][0] > 0


def test_plugins_can_be_turned_off(plugin_env):
    proc = run_nca("plugins", "--json", env={**plugin_env, "NCA_NO_PLUGINS": "1"})
    data = json.loads(proc.stdout)
    names = {e["name"] for e in data["entries"]}
    assert data["plugins_disabled"] and "alive" not in names and "moore" not in names and "train" in names
    assert b"warning" not in proc.stderr
    assert run_nca("alive", "x", env={**plugin_env, "NCA_NO_PLUGINS": "1"}).returncode == 2
