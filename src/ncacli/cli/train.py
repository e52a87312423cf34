"""``nca train``: learn an update rule from a target image or emoji."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Optional

import typer

from ncacli.cli.common import check_name, console, device, emit_json
from ncacli.errors import NcaError


def train(
    target: Optional[str] = typer.Option(None, "--target", "-t", help="Target image (PNG, JPEG, WebP, ...)."),
    emoji: Optional[str] = typer.Option(None, "--emoji", "-e", help="Target emoji from Twemoji (default 🦎)."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Preset name or TOML path (`nca presets`)."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="TOML file of config keys."),
    sets: Optional[list[str]] = typer.Option(None, "--set", help="Override a config key: key=value (repeatable)."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Training iterations."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Batch size."),
    size: Optional[int] = typer.Option(None, "--size", help="Fit the target into this many cells."),
    padding: Optional[int] = typer.Option(None, "--padding", help="Empty cells around the target."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (weights, batches, fire masks)."),
    device_name: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1, mps."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Run directory (default runs/<time>-<preset>-<target>)."
    ),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train an NCA to grow a target from a seed; the last stdout line is JSON naming the run."""
    from ncacli import config as cfgmod
    from ncacli.io.images import load_target
    from ncacli.train.run_dir import RunDir, default_run_dir

    flags = {
        "target": target,
        "emoji": emoji,
        "iters": iters,
        "batch": batch,
        "size": size,
        "padding": padding,
        "seed": seed,
        "device": device_name,
    }
    if resume is not None:
        run_dir = RunDir(resume)
        if not (resume / "config.toml").exists():
            raise NcaError(f"{resume}: not a run directory (no config.toml)")
        config = cfgmod.apply(cfgmod.Config(), cfgmod.read_toml(resume / "config.toml", "config"), str(resume))
        config = cfgmod.apply(
            config, {k: v for k, v in flags.items() if v is not None and k in ("iters", "device")}, "option"
        )
        tensors, meta = run_dir.load_resume()
        target_rgba, target_desc = tensors["target"], config.target or f"emoji {config.emoji}"
    else:
        config = cfgmod.resolve(preset, config_file, sets, flags)
        target_rgba, target_desc = load_target(config.target, config.emoji, config.size, config.padding)
        run_dir = RunDir(out if out is not None else default_run_dir(config, target_desc))
    _check_registries(config)
    trainer = _make_trainer(config, target_rgba, device(config.device))
    if resume is not None:
        trainer.load_state_tensors(tensors, meta)
        run_dir.truncate_metrics(trainer.iteration)
        cfgmod.validate(config)
        from ncacli.io.files import atomic_write_bytes

        atomic_write_bytes(run_dir.path / "config.toml", config.to_toml().encode())
    else:
        run_dir.create(config)

    provenance = {
        "preset": config.preset,
        "target": target_desc,
        "mode": config.mode,
        "seed": config.seed,
        "loss": config.loss,
        "device": str(trainer.device),
        "grid": list(target_rgba.shape[1:]),
        "seed_positions": trainer.seed_positions,
    }
    _fit(trainer, run_dir, provenance, quiet)
    emit_json(
        {
            "run_dir": str(run_dir.path),
            "model": str(run_dir.model_path),
            "preview": str(run_dir.preview_path),
            "iterations": trainer.iteration,
            "loss": _last_loss(run_dir),
        }
    )


def _check_registries(config) -> None:
    from ncacli.engine.perception import PERCEPTIONS
    from ncacli.losses import LOSSES
    from ncacli.plugins import load_losses, load_perceptions

    load_perceptions()
    load_losses()
    check_name("perception", config.perception, list(PERCEPTIONS))
    check_name("loss", config.loss, list(LOSSES))


def _make_trainer(config, target_rgba, dev):
    from ncacli.train.loop import Trainer

    return Trainer(config, target_rgba, dev)


def _last_loss(run_dir) -> float | None:
    if not run_dir.metrics_path.exists():
        return None
    lines = run_dir.metrics_path.read_text(encoding="utf-8").splitlines()
    return json.loads(lines[-1])["loss"] if lines else None


def _fit(trainer, run_dir, provenance, quiet: bool) -> None:
    """Run the loop with a progress bar; Ctrl-C saves a checkpoint and exits 130; NaN stops cleanly."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ncacli.train.loop import NonFiniteLoss, run

    stop = {"requested": False}

    def on_sigint(signum, frame) -> None:
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        console.print("[yellow]interrupt: finishing this iteration and saving (Ctrl-C again to abort)[/]")

    previous = signal.signal(signal.SIGINT, on_sigint)
    cfg = trainer.config
    progress = Progress(
        TextColumn("[bold]train[/] {task.fields[mode]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.5f}"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )
    last_time = [time.perf_counter()]

    def on_record(record) -> None:
        run_dir.append_metrics(record)
        now = time.perf_counter()
        dt, last_time[0] = now - last_time[0], now
        cells = cfg.batch * trainer.target.shape[1] * trainer.target.shape[2] * record.steps
        rate = f"{cells / dt / 1e6:.2f} Mcell-steps/s"
        progress.update(task, completed=record.iteration, loss=record.loss, rate=rate)

    def on_checkpoint(tr) -> None:
        run_dir.save_checkpoint(tr, provenance)

    try:
        with progress:
            task = progress.add_task(
                "train", total=cfg.iters, completed=trainer.iteration, mode=cfg.mode, loss=float("nan"), rate=""
            )
            finished = run(trainer, on_record, on_checkpoint, lambda: stop["requested"])
    except NonFiniteLoss as exc:
        signal.signal(signal.SIGINT, previous)
        kept = run_dir.checkpoints()
        if trainer.iteration > 0 and trainer.parameters_finite():
            kept.append(run_dir.save_checkpoint(trainer, provenance))
        where = f"last good checkpoint: {kept[-1]}" if kept else "no checkpoint was written before it"
        raise NcaError(f"{exc}; training stopped, {where}") from None
    finally:
        signal.signal(signal.SIGINT, previous)
    if not finished:
        path = run_dir.save_checkpoint(trainer, provenance)
        console.print(
            f"interrupted at iteration {trainer.iteration}: saved {path}; "
            f"continue with `nca train --resume {run_dir.path}`"
        )
        raise typer.Exit(130)
    run_dir.save_final(trainer, provenance)
    console.print(f"model: {run_dir.model_path}\npreview: {run_dir.preview_path}")
