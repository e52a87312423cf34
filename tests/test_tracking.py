"""Experiment tracking: `nca train --log tensorboard` read back with TensorBoard's own reader, `--log wandb` in
offline mode (no network) checked through the files of its run, both continued by --resume, and --evaluate."""

from __future__ import annotations

import json

import pytest

from conftest import last_json, one_error_line, run_cli
from ncacli.errors import UsageError

# a 16×16 grid, 6 iterations, a checkpoint (and its preview) every 3
SHORT = ["--preset", "growing", "--size", "10", "--padding", "3", "--batch", "2", "--set", "steps_min=6",
         "--set", "steps_max=8", "--set", "hidden=16", "--set", "checkpoint_every=3", "--seed", "1", "--quiet",
         "--device", "cpu"]  # fmt: skip


def events(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    reader.Reload()
    return reader


def test_tensorboard_logs_every_iteration_the_previews_and_the_config_and_resumes(capsys, tmp_path):
    run = tmp_path / "tb"
    code, _, err = run_cli(capsys, "train", *SHORT, "--iters", "6", "--log", "tensorboard", "--out", run)
    assert code == 0, err
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    reader = events(run)
    loss = reader.Scalars("loss")
    assert [e.step for e in loss] == [1, 2, 3, 4, 5, 6]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in logged], rel=1e-6)  # stored as float32
    assert [e.value for e in reader.Scalars("steps")] == [r["steps"] for r in logged]
    assert {"lr", "seconds"} <= set(reader.Tags()["scalars"])
    assert [e.step for e in reader.Images("preview")] == [3, 6]  # the checkpoint's, then the final preview
    assert "config/text_summary" in reader.Tags()["tensors"]
    code, _, err = run_cli(capsys, "train", "--resume", run, "--iters", "9", "--log", "tensorboard", "--quiet")
    assert code == 0, err
    reader = events(run)
    assert [e.step for e in reader.Scalars("loss")] == list(range(1, 10))  # the same curve, continued
    assert [e.step for e in reader.Images("preview")] == [3, 6, 9]


def test_wandb_runs_offline_and_a_resume_continues_the_same_run(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "wb"
    code, out, err = run_cli(capsys, "train", *SHORT, "--iters", "6", "--log", "wandb", "--evaluate", "--out", run)
    assert code == 0, err
    run_id = (run / "wandb-id").read_text()
    (record_file,) = (run / "wandb").glob(f"offline-run-*/run-{run_id}.wandb")
    first, record = record_file.parent, record_file.read_bytes()
    for key in (b"loss", b"lr", b"seconds", b"preview", b"evaluate/mse/stage3", b"steps_min"):
        assert key in record, key  # history, summary and config, in the run's own record file
    assert sorted(p.name.split("_")[1] for p in (first / "files" / "media" / "images").glob("preview_*")) == ["3", "6"]
    figures = last_json(out)["evaluate"]
    assert figures["file"] == str(run / "evaluate.json") and "mse/stage3" in figures and "ssim/stage2" in figures
    code, _, err = run_cli(capsys, "train", "--resume", run, "--iters", "9", "--log", "wandb", "--quiet")
    assert code == 0, err
    assert (run / "wandb-id").read_text() == run_id
    # the same run id, so `wandb sync` joins them; a second run within the same second gets a "-1" on its folder
    assert len(list((run / "wandb").glob(f"offline-run-*/run-{run_id}.wandb"))) == 2


def test_bad_loggers_are_one_line_before_anything_is_written(capsys, tmp_path, monkeypatch):
    from ncacli.train.tracking import check_loggers

    assert check_loggers(["tensorboard", "tensorboard"]) == ["tensorboard"]
    with pytest.raises(UsageError, match="did you mean 'wandb'"):
        check_loggers(["wandbb"])
    code, _, err = run_cli(capsys, "train", *SHORT, "--iters", "2", "--log", "mlflow", "--out", tmp_path / "a")
    assert code == 2 and not (tmp_path / "a").exists()
    one_error_line(err, "--log 'mlflow'", "tensorboard or wandb")
    import builtins

    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard":
            raise ImportError("no module named tensorboard")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    code, _, err = run_cli(capsys, "train", *SHORT, "--iters", "2", "--log", "tensorboard", "--out", tmp_path / "b")
    assert code == 2 and not (tmp_path / "b").exists()
    one_error_line(err, "--log tensorboard", '".[tensorboard]"')


def test_evaluate_is_refused_for_a_run_without_a_model(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--task", "pixels", "--prompt", "x", "--evaluate", "--out", tmp_path / "p")
    assert code == 2 and not (tmp_path / "p").exists()
    one_error_line(err, "--evaluate", "pixels")
