"""Training: the loss falls, presets train, resume matches an uninterrupted run, NaN and Ctrl-C stop cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, TINY, last_json, objective_args, run_cli
from ncacli.config import list_presets, resolve
from ncacli.io.images import image_to_rgba
from ncacli.train.loop import Trainer, run

SETS = [
    "iters=10",
    "steps_min=8",
    "steps_max=12",
    "pool_size=16",
    "damage_count=1",
    "hidden=32",
    "batch=4",
    "size=10",
    "padding=3",
    "checkpoint_every=5",
    "device='cpu'",
]


def tiny_trainer(target_png, preset="growing", extra=()):
    config = resolve(preset, None, [*SETS, *extra])
    target = image_to_rgba(target_png.read_bytes(), "t", config.size, config.padding)
    return Trainer(config, target, torch.device("cpu"))


def test_short_training_lowers_the_loss(target_png):
    trainer = tiny_trainer(target_png, extra=["lr=0.004"])
    losses = [trainer.step().loss for _ in range(40)]
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


@pytest.mark.parametrize("preset", sorted(list_presets()))
def test_every_preset_shrunk_trains(capsys, tmp_path, target_png, tiny_clip, style_png, preset):
    out = tmp_path / preset
    extra = objective_args(preset, tiny_clip, style_png)
    code, stdout, err = run_cli(
        capsys, "train", "--target", target_png, "--preset", preset, "--iters", "6", "--out", out, *TINY, *extra
    )
    assert code == 0, err
    result = last_json(stdout)
    assert result["model"] == str(out / "model.safetensors") and result["iterations"] == 6
    for name in (
        "config.toml",
        "metrics.jsonl",
        "model.safetensors",
        "preview.png",
        "resume.safetensors",
        "checkpoints/step-000005.safetensors",
        "checkpoints/step-000005.png",
    ):
        assert (out / name).is_file(), name
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines] == [1, 2, 3, 4, 5, 6]
    assert set(lines[0]) >= {"iteration", "loss", "lr", "seconds"}
    assert f'preset = "{preset}"' in (out / "config.toml").read_text()


def test_resume_matches_an_uninterrupted_run(tmp_path, target_png):
    from ncacli.train.run_dir import RunDir

    full = tiny_trainer(target_png, "regenerating")
    run(full, lambda r: None, lambda t: None)

    first = tiny_trainer(target_png, "regenerating")
    run(first, lambda r: None, lambda t: None, should_stop=lambda: first.iteration >= 4)
    assert first.iteration == 4
    run_dir = RunDir(tmp_path / "run")
    run_dir.create(first.config)
    run_dir.save_resume(first)

    second = tiny_trainer(target_png, "regenerating")
    second.load_state_tensors(*run_dir.load_resume())
    run(second, lambda r: None, lambda t: None)
    assert second.iteration == full.iteration == 10
    for a, b in zip(full.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(full.pool.states, second.pool.states)


def test_nan_loss_stops_with_a_checkpoint_and_a_clear_line(capsys, tmp_path, target_png):
    out = tmp_path / "nan"
    code, stdout, err = run_cli(
        capsys,
        "train",
        "--target",
        target_png,
        "--iters",
        "30",
        "--out",
        out,
        *TINY,
        "--set",
        "lr=1e30",
        "--set",
        "grad_norm=false",
    )
    assert code == 1
    assert "loss became nan at iteration" in err and "last good checkpoint" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (out / "model.safetensors").exists()


@pytest.mark.parametrize(("sent", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_saves_and_resume_finishes(tmp_path, target_png, sent, code):
    """Ctrl-C, or SIGTERM as a batch system sends it at its time limit: the run is saved and resumes."""
    out = tmp_path / "interrupted"
    args = ["train", "--target", str(target_png), "--iters", "400", "--out", str(out), *TINY]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ncacli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
    )
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.2)
    proc.send_signal(sent)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err.decode()
    assert b"nca train --resume" in err
    done = len(metrics.read_text().splitlines())
    assert 3 <= done < 400
    assert (out / f"checkpoints/step-{done:06d}.safetensors").is_file()
    assert not (out / "model.safetensors").exists()

    resumed = subprocess.run(
        [sys.executable, "-m", "ncacli", "train", "--resume", str(out), "--iters", str(done + 3), "--quiet"],
        capture_output=True,
        timeout=120,
        cwd=ROOT,
    )
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert json.loads(resumed.stdout.decode().splitlines()[-1])["iterations"] == done + 3
    iterations = [json.loads(ln)["iteration"] for ln in metrics.read_text().splitlines()]
    assert iterations == list(range(1, done + 4))
