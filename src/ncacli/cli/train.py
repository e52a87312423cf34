"""``nca train``: learn an update rule for a task (a target image or emoji, a prompt, a texture, digits to classify)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any, Optional

import typer

from ncacli.cli.common import ENGINE_NAMES, check_name, console, emit_json, engine_option
from ncacli.cli.groups import device_option
from ncacli.errors import NcaError, UsageError, WriteError
from ncacli.train import distributed


@distributed.command  # under torchrun: leaves the process group at the end; shows an error once
def train(
    target: Optional[list[str]] = typer.Option(
        None, "--target", "-t", help="Target image (PNG, JPEG, WebP, ...); repeat for a conditional model."
    ),
    emoji: Optional[list[str]] = typer.Option(
        None, "--emoji", "-e", help="Target emoji from Twemoji (default 🦎); repeat for a conditional model."
    ),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Text to grow towards through CLIP (--loss clip)."),
    style: Optional[str] = typer.Option(
        None,
        "--style",
        help="Texture image for the VGG style loss (--loss style); skimage:NAME for one scikit-image ships.",
    ),
    loss: Optional[str] = typer.Option(
        None, "--loss", help="Objective: mse, clip, style, or a sum like style+clip (default from the inputs)."
    ),
    loss_weights: Optional[str] = typer.Option(None, "--loss-weights", help="Weights of a sum: style=1,clip=0.5."),
    task: Optional[str] = typer.Option(
        None, "--task", help="image, text, texture, pixels, classify, or a plugin's (default from the preset)."
    ),
    data: Optional[str] = typer.Option(
        None,
        "--data",
        help="--task classify: digits (bundled), mnist, cifar10, or a folder of class sub-folders; --task video: "
        "moving-digits (generated), moving-mnist, or a folder of .npy videos.",
    ),
    model_kind: Optional[str] = typer.Option(
        None,
        "--model",
        help="nca (default); unet: a single-pass U-Net (the baseline of the NCAtorch review's Tables 1 and 6); "
        "pix2pix: the U-Net against pix2pix's conditional critic (--loss l1+gan).",
    ),
    clip_model: Optional[str] = typer.Option(
        None, "--clip-model", help="open_clip model name, local-dir:PATH, or a model config JSON (default ViT-B-32)."
    ),
    clip_pretrained: Optional[str] = typer.Option(
        None, "--clip-pretrained", help="open_clip weights tag (default openai), a local weights file, or a folder."
    ),
    style_loss: Optional[str] = typer.Option(None, "--style-loss", help="sot (sliced optimal transport) or gram."),
    vgg_weights: Optional[str] = typer.Option(
        None,
        "--vgg-weights",
        help="Local VGG16 weights file, whole or features only "
        "(default: $NCA_VGG16_WEIGHTS, else torchvision's cache).",
    ),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Preset name or TOML path (`nca presets`)."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="TOML file of config keys."),
    sets: Optional[list[str]] = typer.Option(None, "--set", help="Override a config key: key=value (repeatable)."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Training iterations."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Batch size."),
    size: Optional[int] = typer.Option(None, "--size", help="Fit the target into this many cells."),
    padding: Optional[int] = typer.Option(None, "--padding", help="Empty cells around the target."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (weights, batches, fire masks)."),
    device_name: Optional[str] = device_option(None),
    engine: str = engine_option(),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Run directory (default runs/<time>-<preset>-<target>)."
    ),
    autoencoder: Optional[str] = typer.Option(
        None, "--autoencoder", help="Latent tasks: reuse this trained autoencoder (a run's autoencoder.safetensors)."
    ),
    log: Optional[list[str]] = typer.Option(
        None, "--log", help="Report to tensorboard (events in RUN/tensorboard) or wandb (offline without network)."
    ),
    evaluate_after: bool = typer.Option(
        False, "--evaluate", help="Run nca evaluate on the model at the end (RUN/evaluate.json; logged with --log)."
    ),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train an NCA for a task (default from the preset); the last stdout line is JSON naming the run."""
    given = dict(locals())
    from ncacli.tasks.autoencoder import Interrupted
    from ncacli.train.session import open_session
    from ncacli.train.tracking import Trackers, check_loggers

    check_name("engine", engine, ENGINE_NAMES)
    loggers = check_loggers(log or [])
    world = distributed.World.from_env()  # None unless started by torchrun
    config, notes = _config(given)
    try:
        session = open_session(config, out, resume, engine, world, notes, quiet)
    except Interrupted as exc:
        console.print(f"{exc}; continue with `nca train --resume {exc.path.parent}`", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    console.quiet = not session.writes
    for note in session.notes:
        console.print(note, highlight=False)
    trackers = Trackers(loggers if session.writes else [], session.run_dir.path, config, session.trainer.iteration)
    finished = False
    try:
        _fit(session.trainer, session.run_dir, session.saver, quiet, trackers)
        finished = True
    finally:
        if not finished:
            trackers.finish()
    summary = session.summary() if session.writes else {}
    figures = _evaluate(session) if evaluate_after and session.writes else None
    if figures is not None:
        summary["evaluate"] = {"file": str(session.run_dir.path / "evaluate.json"), **figures}
    trackers.finish(figures)
    if session.writes:
        emit_json(summary)


def _config(g: dict[str, Any]) -> tuple[Any, list[str]]:
    """The run's configuration from the verb's options (``g``, by name): read back from ``--resume``'s run, or
    defaults < preset (named, else the one the inputs imply) < ``--config`` < ``--set`` < flags; and the notes
    to print first (the preset implied)."""
    from ncacli import config as cfgmod
    from ncacli.options import flag_options
    from ncacli.registry import OBJECTIVES, TASKS
    from ncacli.train.session import resumed_config

    task, data, prompt, style = g["task"], g["data"], g["prompt"], g["style"]
    if data is not None and task is None and g["preset"] is None and g["config_file"] is None:
        task = _task_of_data(data)  # else the preset's task reads it
    architecture = _architecture(g)
    if g["model_kind"] is not None and architecture is None and task is None:
        task = g["model_kind"]  # 0.1.0's --model pixels: a task's name
    if g["autoencoder"] is not None and task is None and g["preset"] is None and g["config_file"] is None:
        task = _task_reading("autoencoder")  # else the preset's task, which must take it
    flags = {
        **_target_flags(g["target"] or [], g["emoji"] or []),
        "loss": g["loss"] or _loss_from_inputs(prompt, style),
        "loss_weights": _parse_weights(g["loss_weights"]) if g["loss_weights"] is not None else None,
        "task": {k: v for k, v in (("name", task), ("data", data)) if v is not None} or None,
        "objectives": flag_options(OBJECTIVES, g),
        "device": g["device_name"],
    }
    flags.update({key: g[key] for key in ("iters", "batch", "size", "padding", "seed")})
    if architecture is not None:  # before --set, which may give its options
        g["sets"] = [f'architecture="{architecture}"', *(g["sets"] or [])]
    notes = []
    if g["resume"] is not None:
        config = resumed_config(g["resume"], {"iters": g["iters"], "device": g["device_name"]})
    else:
        preset, named = g["preset"], g["preset"] is not None or g["config_file"] is not None
        implied = None if named else _implied_preset(flags["loss"], task, data)
        config = cfgmod.resolve(preset or implied, g["config_file"], g["sets"], flags)
        if implied:
            why = f"--task {task}" if task is not None else f"--loss {config.loss}"
            notes.append(f"preset: {implied} (for {why}; name another with --preset)")
    if g["resume"] is None:
        config = _check_architecture(config, g["sets"] or [], named=architecture is not None)
    if g["evaluate_after"] and not TASKS.get(config.task_name(), "task").writes_model:
        raise UsageError(f"--evaluate: a {config.task_name()} run writes no model, so there is nothing to evaluate")
    if g["autoencoder"] is not None:
        name = config.task_name()
        if "autoencoder" not in getattr(TASKS.get(name, "task"), "train_options", ()):
            raise UsageError(f"--autoencoder: a {name} run has no autoencoder to reuse (latent tasks take one)")
        config = cfgmod.apply(config, {"task": {"autoencoder": g["autoencoder"]}}, "--autoencoder")
        cfgmod.validate(config)
    return config, notes


PIX2PIX = {"architecture": "unet", "loss": "l1+gan", "loss_weights": "l1=100,gan=1"}  # pix2pix's objective


def _architecture(g: dict[str, Any]) -> str | None:
    """The architecture ``--model`` names (``pix2pix``: the U-Net and pix2pix's objective, set in ``g``), or None
    (``--model`` not given, or a task's name: 0.1.0's ``--model pixels``)."""
    from ncacli.registry import ARCHITECTURES, TASKS

    model = g["model_kind"]
    if model == "pix2pix":
        if g["loss"] is not None or g["loss_weights"] is not None:
            raise UsageError("--model pix2pix trains with pix2pix's l1+gan; another objective: --model unet --loss …")
        g["loss"], g["loss_weights"] = PIX2PIX["loss"], PIX2PIX["loss_weights"]
        return PIX2PIX["architecture"]
    if model is None or any(model in getattr(TASKS[name], "spelled_model", ()) for name in TASKS):
        return None
    ARCHITECTURES.get(model, "model")  # one line for an unknown name
    return model


def _check_architecture(config: Any, sets: list[str], named: bool) -> Any:
    """A model of another architecture than the NCA refuses the options only an NCA reads, given with --set; named
    by ``--model`` (over an NCA's preset), it trains as its class says (``training``: an NCA preset's rate is not a
    U-Net's) where --set does not say. A preset or --config that names the architecture says its own rate."""
    from ncacli import config as cfgmod
    from ncacli.engine.nca import NCA_ONLY
    from ncacli.registry import ARCHITECTURES

    if config.architecture == "nca":
        return config
    given = {item.split("=", 1)[0].strip().split(".", 1)[0] for item in sets}
    for key in sorted(given & set(NCA_ONLY)):
        raise UsageError(f"--set {key}: only an NCA reads it, and --model {config.architecture} is not one")
    own = getattr(ARCHITECTURES[config.architecture], "training", {}) if named else {}
    return cfgmod.apply(config, {k: v for k, v in own.items() if k not in given}, f"--model {config.architecture}")


def _evaluate(session) -> dict[str, float]:
    """``nca evaluate`` of the finished model, its defaults but those metrics that cannot be had here without a
    download (LPIPS without AlexNet's weights) → the headline figures (also written whole to ``RUN/evaluate.json``)."""
    import json

    from ncacli import api
    from ncacli.evaluation.metrics import hook
    from ncacli.io.files import atomic_write_bytes
    from ncacli.registry import METRICS
    from ncacli.train.tracking import headline

    model = api.load(session.run_dir.model_path, str(session.trainer.device))
    metrics = []
    for name in model.task.evaluation_metrics:
        why = hook(METRICS.get(name, "metric"), "unavailable")()
        if why:
            console.print(f"--evaluate: {name} left out ({why})", highlight=False)
        else:
            metrics.append(name)
    document = api.evaluate(model, metrics=metrics)  # a classifier's evaluation reads no metrics
    path = session.run_dir.path / "evaluate.json"
    atomic_write_bytes(path, json.dumps(document, indent=1, default=str).encode())
    figures = headline(document)
    console.print(f"evaluate: {path}", highlight=False)
    return figures


def _target_flags(targets: list[str], emojis: list[str]) -> dict[str, Any]:
    """``--target``/``--emoji`` as config keys: one names the target; several make a conditional model
    (files first, then emoji), and either replaces a preset's list."""
    if len(targets) + len(emojis) == 1:
        return {
            "target": targets[0] if targets else None,
            "emoji": emojis[0] if emojis else None,
            "targets": [],
            "emojis": [],
        }
    if targets or emojis:
        return {"targets": targets, "emojis": emojis}
    return {}


def _task_reading(option: str) -> str | None:
    """The task that alone reads ``nca train``'s ``option`` (``Task.train_options``), or None."""
    from ncacli.registry import TASKS

    return next((name for name in TASKS if option in getattr(TASKS[name], "train_options", ())), None)


def _task_of_data(data: str) -> str:
    """The task ``--data`` means: the first, in the registry's order, that says it reads it."""
    from ncacli.registry import TASKS

    found = next((name for name in TASKS if getattr(TASKS[name], "reads_data", lambda d: False)(data)), None)
    if found is None:
        raise UsageError(f"--data {data}: no installed task reads it (not a data set a task names, nor a folder)")
    return found


def _loss_from_inputs(prompt: str | None, style: str | None) -> str | None:
    """``--prompt`` alone means clip, ``--style`` alone style, both style+clip; else the preset decides."""
    names = [name for name, given in (("style", style), ("clip", prompt)) if given]
    return "+".join(names) or None


def _implied_preset(loss: str | None, task: str | None, data: str | None) -> str | None:
    """The preset the inputs imply when none is named: the named task's, else that of the task the loss's first
    objective implies (``Task.preset_for``: texture for style, clip for clip, the data set's for a classifier,
    else the preset of the task's name where there is one)."""
    from ncacli.config import loss_names
    from ncacli.registry import TASKS

    if task is not None:
        return TASKS.get(task, "task").preset_for(data)
    for objective in loss_names(loss) if loss else []:  # the first objective that implies a task (style+clip: texture)
        implied = [TASKS[name] for name in TASKS if objective in getattr(TASKS[name], "implied_by", ())]
        if implied:
            return implied[0].preset_for(data)
    return None


def _parse_weights(text: str) -> dict[str, float]:
    """``style=1,clip=0.5`` → ``{"style": 1.0, "clip": 0.5}``."""
    from ncacli.errors import UsageError

    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--loss-weights {text!r}: expected name=number pairs like style=1,clip=0.5") from None
    return weights


def _fit(trainer, run_dir, saver, quiet: bool, trackers) -> None:
    """Run the loop with a progress bar; Ctrl-C (or SIGTERM, as a batch system sends at its time limit) saves a
    checkpoint and exits 130 (143); NaN stops cleanly."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ncacli.train.loop import NonFiniteLoss, run
    from ncacli.train.run_dir import RESUME

    stop = {"requested": False, "signal": signal.SIGINT}
    handled = (signal.SIGINT, signal.SIGTERM)

    def on_signal(signum, frame) -> None:
        if stop["requested"]:
            raise KeyboardInterrupt
        stop.update(requested=True, signal=signum)
        what = "interrupt" if signum == signal.SIGINT else "terminated"
        console.print(f"[yellow]{what}: finishing this iteration and saving (Ctrl-C again to abort)[/]")

    previous = {signum: signal.signal(signum, on_signal) for signum in handled}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

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
        trackers.record(record)
        now = time.perf_counter()
        dt, last_time[0] = now - last_time[0], now
        cells = trainer.cells() * record.steps
        rate = f"{cells / dt / 1e6:.2f} Mcell-steps/s" if cells else f"{1 / dt:.2f} it/s"
        progress.update(task, completed=record.iteration, loss=record.loss, rate=rate)

    def on_checkpoint(tr) -> None:
        path = saver.checkpoint(tr)
        trackers.picture(tr.iteration, path.with_suffix(".png"))

    try:
        try:
            with progress:
                task = progress.add_task(
                    "train", total=cfg.iters, completed=trainer.iteration, mode=cfg.mode, loss=float("nan"), rate=""
                )
                finished = run(trainer, on_record, on_checkpoint, lambda: stop["requested"])
        except NonFiniteLoss as exc:
            restore()
            kept = saver.kept()
            if trainer.iteration > 0 and trainer.parameters_finite():
                kept.append(saver.checkpoint(trainer))
            where = f"last good checkpoint: {kept[-1]}" if kept else "no checkpoint was written before it"
            raise NcaError(f"{exc}; training stopped, {where}") from None
        finally:
            restore()
        if not finished:
            path = saver.checkpoint(trainer)
            console.print(f"interrupted at iteration {trainer.iteration}: saved {path}; {saver.resume_hint}")
            raise typer.Exit(128 + stop["signal"])
        saver.final(trainer)
        trackers.picture(trainer.iteration, run_dir.preview_path)
    except WriteError as exc:  # the files written before are whole: say where the run stands
        can_resume = (run_dir.path / RESUME).exists()  # a run that writes no model keeps no resume file
        hint = saver.resume_hint if can_resume else "nothing was saved to resume from"
        raise WriteError(f"{exc} (training stopped at iteration {trainer.iteration}; {hint})") from None
    console.print(saver.done, highlight=False)
