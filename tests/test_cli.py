"""The verbs end to end, a real shell pipeline, and every bad input's one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import imageio.v3 as iio
import pytest
from PIL import Image

from conftest import ROOT, TINY, one_error_line, run_cli, run_nca


def test_help_lists_every_verb_quickly():
    start = time.perf_counter()
    proc = run_nca("--help")
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0
    for verb in ("train", "grow", "damage", "evaluate", "render", "benchmark", "info", "presets", "plugins"):
        assert verb in proc.stdout.decode()
    # heavy libraries stay unimported for --help
    code = "import sys; from ncacli.cli import build_app; build_app(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    assert elapsed < 5  # generous: a loaded CI machine; typically ~0.5 s


def test_grow_writes_png_and_state(capsys, tmp_path, tiny_model):
    png = tmp_path / "grown.png"
    code, out, err = run_cli(capsys, "grow", tiny_model, "--steps", "20", "--out", png, "--json", "--scale", "2")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["kind"] == "png" and summary["step"] == 20
    image = Image.open(png)
    assert image.mode == "RGB" and image.size == (2 * 16, 2 * 16)
    code, _, _ = run_cli(capsys, "grow", tiny_model, "--steps", "5", "--out", tmp_path / "t.png", "--transparent")
    assert Image.open(tmp_path / "t.png").mode == "RGBA"
    state = tmp_path / "s.safetensors"
    assert run_cli(capsys, "grow", tiny_model, "--steps", "10", "--out", state, "--batch", "3")[0] == 0
    assert (
        run_cli(
            capsys, "grow", tiny_model, "--from", state, "--steps", "10", "--out", tmp_path / "s2.safetensors", "--json"
        )[0]
        == 0
    )


def test_grow_from_a_state_carries_on_its_step_count(capsys, tmp_path, tiny_model):
    from ncacli.cli.common import read_state

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert run_cli(capsys, "grow", tiny_model, "--steps", "30", "--out", a, "--seed", "5")[0] == 0
    assert run_cli(capsys, "grow", tiny_model, "--from", a, "--steps", "5", "--out", b)[0] == 0
    state_a, step_a = read_state(str(a))
    state_b, step_b = read_state(str(b))
    assert (step_a, step_b) == (30, 35) and state_a.shape == state_b.shape == (1, 16, 16, 16)
    assert not state_a.equal(state_b)


def test_damage_state_and_image(capsys, tmp_path, tiny_model, target_png):
    from ncacli.cli.common import read_state

    state = tmp_path / "s.safetensors"
    run_cli(capsys, "grow", tiny_model, "--steps", "10", "--out", state)
    for shape in ("circle", "square", "left", "right", "top", "bottom"):
        out = tmp_path / f"d-{shape}.safetensors"
        code, stdout, err = run_cli(capsys, "damage", state, "--shape", shape, "--out", out, "--json")
        assert code == 0, err
        assert json.loads(stdout)["erased_cells"] > 0
        damaged, step = read_state(str(out))
        assert step == 10
    left, _ = read_state(str(tmp_path / "d-left.safetensors"))
    assert left[0, :, :, :8].abs().sum() == 0
    code, _, err = run_cli(
        capsys, "damage", target_png, "--shape", "circle", "--radius", "0.3", "--out", tmp_path / "holed.png"
    )
    assert code == 0, err
    holed = Image.open(tmp_path / "holed.png")
    assert holed.mode == "RGBA" and holed.getpixel((8, 8))[3] == 0


def test_shell_pipeline_grow_damage_grow(tmp_path, tiny_model):
    healed = tmp_path / "healed.png"
    py = f'"{sys.executable}" -m ncacli'
    cmd = (
        f"{py} grow {tiny_model} --steps 20 --out - | {py} damage - --shape circle --out - | "
        f"{py} grow {tiny_model} --from - --steps 30 --out {healed}"
    )
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b""  # stdout carried only the states between the verbs
    assert Image.open(healed).size == (16, 16)


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_render_gif_and_mp4(capsys, tmp_path, tiny_model, suffix):
    out = tmp_path / f"growth{suffix}"
    code, stdout, err = run_cli(
        capsys,
        "render",
        tiny_model,
        out,
        "--steps",
        "24",
        "--every",
        "2",
        "--scale",
        "3",
        "--damage-at",
        "12",
        "--fps",
        "10",
        "--json",
    )
    assert code == 0, err
    assert json.loads(stdout)["frames"] == 13
    if suffix == ".gif":
        frames = list(iio.imread(out, index=None))
    else:
        import imageio.v2 as imageio

        with imageio.get_reader(out, format="FFMPEG") as reader:
            frames = [frame for frame in reader]  # list() would ask len(), which is inf
    assert len(frames) == 13 and frames[0].shape[:2] == (48, 48)
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_info_text_and_json(capsys, tiny_model):
    code, out, err = run_cli(capsys, "info", tiny_model, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["format"] == "nca-model" and data["config"]["hidden"] == 32
    assert data["provenance"]["iterations"] == 10 and data["provenance"]["preset"] == "growing"
    assert data["parameters"] == 48 * 32 + 32 + 32 * 16 + 16
    perception = {"name": "sobel", "receptive_field": 3, "parameters": 0, "features": 48, "features_per_channel": 3}
    assert data["perception"] == perception
    code, out, err = run_cli(capsys, "info", tiny_model)
    assert code == 0 and "provenance.target" in err and "│ perception " in err


def test_presets(capsys):
    code, out, _ = run_cli(capsys, "presets", "--json")
    assert code == 0 and {"growing", "persistent", "regenerating"} <= set(json.loads(out))


def test_train_prints_json_last(capsys, tiny_run):
    assert (tiny_run / "model.safetensors").is_file() and (tiny_run / "preview.png").is_file()


# ---- bad inputs: one line, non-zero exit, nothing overwritten ------------------------------------------


def test_missing_and_corrupt_images(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--target", tmp_path / "nope.png", *TINY)
    assert code == 1
    one_error_line(err, "nope.png", "not found")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    code, _, err = run_cli(capsys, "train", "--target", corrupt, *TINY)
    assert code == 1
    one_error_line(err, "corrupt.png")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    code, _, err = run_cli(capsys, "train", "--target", text, *TINY)
    one_error_line(err, "notes.png", "not an image")


def test_unknown_emoji_preset_key_and_perception(capsys):
    code, _, err = run_cli(capsys, "train", "--emoji", "xyz", *TINY)
    assert code == 1
    one_error_line(err, "emoji 'xyz'", "Twemoji")
    code, _, err = run_cli(capsys, "train", "--preset", "regenerate", *TINY)
    assert code == 2
    one_error_line(err, "unknown preset 'regenerate'", "regenerating")
    code, _, err = run_cli(capsys, "train", "--set", "fire_rat=0.4", *TINY)
    assert code == 2
    one_error_line(err, "fire_rat", "did you mean 'fire_rate'")
    code, _, err = run_cli(capsys, "train", "--set", "perception=sobell", *TINY)
    assert code == 2
    one_error_line(err, "perception 'sobell'", "sobel")


def test_truncated_and_foreign_model_files(capsys, tmp_path, tiny_model):
    import torch
    from safetensors.torch import save_file

    truncated = tmp_path / "half.safetensors"
    truncated.write_bytes(tiny_model.read_bytes()[:500])
    code, _, err = run_cli(capsys, "grow", truncated, "--out", tmp_path / "x.png")
    assert code == 1
    one_error_line(err, "half.safetensors")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(2)}, str(foreign))
    code, _, err = run_cli(capsys, "info", foreign)
    one_error_line(err, "foreign.safetensors", "not an nca model")
    assert not (tmp_path / "x.png").exists()


def test_state_with_the_wrong_channels(capsys, tmp_path, tiny_model):
    import torch

    from ncacli.io.state_file import state_bytes

    bad = tmp_path / "twelve.safetensors"
    bad.write_bytes(state_bytes(torch.zeros(1, 12, 16, 16)))
    code, _, err = run_cli(capsys, "grow", tiny_model, "--from", bad, "--out", tmp_path / "o.png")
    assert code == 1
    one_error_line(err, "twelve.safetensors", "12 channels", "expects 16")
    code, _, err = run_cli(capsys, "grow", tiny_model, "--from", tiny_model, "--out", tmp_path / "o.png")
    one_error_line(err, "not an nca state")


def test_existing_outputs_are_not_overwritten(capsys, tmp_path, tiny_run, target_png):
    before = (tiny_run / "model.safetensors").read_bytes()
    code, _, err = run_cli(capsys, "train", "--target", target_png, "--out", tiny_run, *TINY)
    assert code == 1
    one_error_line(err, "not empty", "--resume")
    assert (tiny_run / "model.safetensors").read_bytes() == before


def test_debug_shows_the_traceback(tmp_path):
    proc = run_nca("--debug", "info", tmp_path / "missing.safetensors")
    assert proc.returncode == 1 and b"Traceback" in proc.stderr


def test_usage_errors_exit_2(capsys, tiny_model, tmp_path):
    code, _, _ = run_cli(capsys, "grow", tiny_model, "--out", tmp_path / "a.jpg")
    assert code == 2
    code, _, _ = run_cli(capsys, "damage", tiny_model, "--shape", "hexagon", "--out", "-")
    assert code == 2
    code, _, _ = run_cli(capsys, "grow", "--steps", "3")
    assert code == 2
